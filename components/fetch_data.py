"""Stage 1: obtain one raw data version (DVC, the generator, or a directory)."""

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
    raw: Output[Dataset],
) -> str:
    """Write exactly one raw KuaiRec-format data version into ``raw``; return the version.

    ``source``: ``dvc`` (the git + DVC repository ``data_repo`` at ``data_version``, default
    the version its ``data.dvc`` records), ``generate`` (synth ``preset`` with ``data_seed``)
    or ``path`` (the directory ``data_repo``). The version is DVC's directory hash.
    """
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.data import fetch_data

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    result = fetch_data(raw.path, source=source, data_version=data_version,
                        data_repo=data_repo, preset=preset, data_seed=data_seed,
                        tracking=tracking)
    raw.metadata.update({"data_version": result["data_version"], "obtained": result["obtained"]})
    return result["data_version"]
