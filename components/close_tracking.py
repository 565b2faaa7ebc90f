"""The exit handler: the MLflow parent run ends FINISHED or FAILED with the pipeline."""

from kfp import dsl

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def close_tracking(
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    pipeline_run_id: str,
    pipeline_name: str,
    status: dsl.PipelineTaskFinalStatus,
):
    """Runs after every other task, whatever happened: records the pipeline's final state."""
    from grmodel.pipeline.publish import TrackingTarget, close_tracking

    target = TrackingTarget(tracking_uri, pipeline_run_id, mlflow_experiment, mlflow_artifact_root,
                            pipeline_name)
    close_tracking(target, status.state, str(status.error_message or ""))
