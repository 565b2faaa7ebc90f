"""After stage 4: the new processed dataset against the champion's training reference (drift)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def check_drift(
    processed: Input[Dataset],
    data_version: str,
    model_name: str,
    drift_policy: str,
    drift_max_kl: float,
    drift_quantile_tolerance: float,
    drift_max_unseen: float,
    drift_false_alarm: float,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    report: Output[Artifact],
    report_html: Output[HTML],
    drift: Output[Metrics],
) -> str:
    """Compare the processed splits with the reference profile of ``model_name``'s champion
    (none yet: "no reference", passes). ``drift_policy`` warn reports a drift; stop fails the
    task, which stops every downstream stage. The JSON, Markdown and HTML reports go to
    ``report``."""
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.drift import drift_gate
    from grmodel.validation.drift import DriftBounds

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    bounds = DriftBounds(max_kl=drift_max_kl, quantile_tolerance=drift_quantile_tolerance,
                         max_unseen=drift_max_unseen, false_alarm=drift_false_alarm)
    return drift_gate(processed.path, report, report_html.path, drift, model_name=model_name,
                      bounds=bounds, policy=drift_policy, tracking=tracking)
