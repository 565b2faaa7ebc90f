"""Stage 1: obtain one raw data version (DVC, the generator, a directory, or a window of logs
by day), resolved when the run starts."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def fetch_data(
    source: str,
    data_version: str,
    data_repo: str,
    preset: str,
    data_seed: int,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    pipeline_run_id: str,
    pipeline_name: str,
    raw: Output[Dataset],
    as_of: str = "",
    window_days: int = 0,
    scheduled_time: str = "",
    snapshot_remote: str = "",
) -> NamedTuple("Fetched", [("data_version", str), ("as_of", str)]):
    """Write exactly one raw KuaiRec-format data version into ``raw``; return the version and
    the run's resolved ``as_of`` ("" unless ``window_days > 0``).

    ``source``: ``dvc`` (the git + DVC repository ``data_repo`` at ``data_version``, default
    the version its ``data.dvc`` records at its head when the run starts), ``generate`` (synth
    ``preset`` with ``data_seed``), ``path`` (the directory ``data_repo``, snapshotted into the
    DVC remote ``snapshot_remote``) or ``logs`` (the window's day partitions of ``data_repo``).
    A windowed run is as of ``as_of``, else of the last complete day before
    ``scheduled_time`` (KFP's scheduled time). The version is DVC's directory hash. Then the
    pipeline run's MLflow parent run opens, named with that version, this stage's run under it.
    """
    from collections import namedtuple

    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.publish import TrackingTarget, open_pipeline_run
    from grmodel.pipeline.stages.data import fetch_data

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version,
                             pipeline_run_id)
    result = fetch_data(raw.path, source=source, data_version=data_version,
                        data_repo=data_repo, preset=preset, data_seed=data_seed, as_of=as_of,
                        window_days=window_days, scheduled_time=scheduled_time,
                        snapshot_remote=snapshot_remote, tracking=tracking)
    open_pipeline_run(TrackingTarget(tracking_uri, pipeline_run_id, mlflow_experiment,
                                     mlflow_artifact_root, pipeline_name), raw.path)
    raw.metadata.update({"data_version": result["data_version"], "obtained": result["obtained"],
                         "as_of": result["as_of"]})
    return namedtuple("Fetched", ["data_version", "as_of"])(result["data_version"],
                                                            result["as_of"])
