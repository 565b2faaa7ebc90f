"""Kubeflow (KFP v2) components: one module per pipeline stage, each a thin typed wrapper.

A component turns its artifacts into paths, calls one function of ``grmodel.pipeline.stages``
(or ``grmodel.pipeline.publish``) and records what the Kubeflow UI shows (metadata, Markdown,
HTML, Metrics). Imports of ``grmodel`` sit inside the function bodies: KFP ships each body to
its container on its own, and compiling the pipeline then needs neither torch nor MLflow.
Images come from ``grmodel.k8s.images``, the one place that names them.
"""
