"""The training settings the tests share, one place for each (importable by name: pytest puts
this folder on ``sys.path`` for tests/conftest.py, and tests/data has a conftest too, so
``conftest`` itself is ambiguous).

``TINY_RUN``: a throwaway model of every kind, small enough to train in seconds on one thread,
and quiet. A test adds its own epochs, steps, batch size and collapse rule after it.
``FAST_GR``: a small GR that still learns the planted dataset in seconds (tests of quality).
``local_params``: a local pipeline run's parameters on the tiny generated data, tracked in
``workdir``.
"""

from pathlib import Path

TINY_RUN = ["model.emb_dim=16", "model.encoder_hidden=32", "model.d_model=16", "model.n_heads=2",
            "model.ffn_dim=32", "model.n_layers=1", "train.progress=false", "train.num_threads=1"]

FAST_GR = ["model.emb_dim=32", "model.encoder_hidden=64", "model.d_model=32", "model.n_heads=4",
           "model.ffn_dim=64", "model.n_layers=2", "model.dropout=0.0", "train.batch_size=128",
           "train.lr=2e-3", "train.progress=false", "train.num_threads=1",
           # Mechanics tests train a few steps: a model that learned nothing yet is kept, marked.
           "train.on_collapse=warn"]


def local_params(workdir: Path, overrides: list[str], **values):
    from grmodel.pipeline.local import local_tracking
    from grmodel.pipeline.params import PipelineParams

    return PipelineParams().with_values({
        "data_source": "generate", "preset": "tiny", "data_seed": 3, "overrides": overrides,
        "require_beats_baselines": [], "registered_model_name": "local-gr",
        **local_tracking(workdir), **values})
