"""The pipeline's stages as plain functions on directories: what every component calls.

One module per stage group: ``data`` (fetch, validate, ingest), ``drift`` (the new data against
the champion's training reference), ``labels`` (GR's vocabulary and token sequences),
``train``, ``evaluate``; ``runner`` is the one way a stage runs
(:class:`StageRun`), ``record`` holds the stage record every stage writes and ``plan`` the
models, seeds and configs of a run.

Each stage reads its inputs from directories and, through its :class:`StageRun`, writes its
output directory atomically (complete or absent) and leaves a :class:`StageRecord`
(``stage.json``) in it: the configs it ran with, its metrics and curves, and the files worth
keeping. The data stages and the trainings are pure
functions of the data version and the configs, so Kubeflow may cache them. Given a
``StageTracking``, a stage logs its own MLflow run while it runs (``grmodel.pipeline.live``);
:func:`track_and_register` at the end of a run nests those runs under the pipeline run's parent,
and logs from the records what ran untracked or came from Kubeflow's cache.

Stages in order: :func:`fetch_data` → :func:`validate_data` (raw) → :func:`ingest` →
:func:`validate_data` (processed) → :func:`drift_check` → :func:`build_vocab` → :func:`encode_labels` →
:func:`train` (GR, and each baseline) → :func:`evaluate` → :func:`track_and_register`;
:func:`close_tracking` runs last whatever happened.
"""
