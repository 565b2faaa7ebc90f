"""Stage 8: every model on the same test split; the report, figures and metrics."""


from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def evaluate(
    processed: Input[Dataset],
    gr_model: Input[Model],
    baseline_models: Input[list[Model]],
    data_version: str,
    overrides: list,
    seeds: int,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    evaluation: Output[Artifact],
    report_md: Output[Markdown],
    report_html: Output[HTML],
    metrics: Output[Metrics],
) -> str:
    """Score GR and the baselines (MAE, XAUC, per-interval MAE) beside the train median and
    the oracle; return the results table (Markdown)."""
    import shutil
    from pathlib import Path

    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.evaluate import evaluate

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    model_dirs = {"gr": gr_model.path}
    model_dirs |= {m.metadata["row"]: m.path for m in baseline_models}
    result = evaluate(processed.path, model_dirs, evaluation.path, overrides=overrides,
                      seeds=seeds, data_version=data_version, tracking=tracking)
    shutil.copyfile(Path(evaluation.path) / "report.md", report_md.path)
    shutil.copyfile(Path(evaluation.path) / "report.html", report_html.path)
    evaluation.metadata.update({"data_version": data_version})
    for row, values in result["metrics"].items():
        for name, value in values.items():
            metrics.log_metric(f"{row}.{name}", value)
    return result["table"]
