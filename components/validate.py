"""Stages 2 and 4: the great-expectations gate on the raw files and on the processed tables."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from grmodel.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def validate(
    data: Input[Dataset],
    kind: str,
    data_version: str,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    report: Output[Artifact],
    report_html: Output[HTML],
    checks: Output[Metrics],
) -> str:
    """Validate ``data`` (``kind``: ``raw`` or ``processed``); fail the task when a check fails,
    which stops every downstream stage. The JSON, Markdown and HTML reports go to ``report``."""
    import shutil
    from pathlib import Path

    from grmodel.pipeline import stages
    from grmodel.pipeline.live import StageTracking

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    try:
        result = stages.validate_data(data.path, kind, report.path, tracking)
    finally:  # the report is the one thing a failed gate must leave behind
        page = Path(report.path) / "validation.html"
        if page.is_file():
            shutil.copyfile(page, report_html.path)
    report.metadata.update({"kind": kind, "data_version": data_version})
    for status, count in result["counts"].items():
        checks.log_metric(f"{kind}_checks_{status}", count)
    return result["summary"]
