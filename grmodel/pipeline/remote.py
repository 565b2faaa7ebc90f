"""Compile the pipeline, and submit or schedule it on a Kubeflow Pipelines cluster.

Submission goes through ``kfp.Client`` (the KFP REST API v2beta1): the experiment is created
when missing, then a run or a recurring run is created from the compiled package with the
given parameters. Credentials come from the environment (``KF_PIPELINES_SA_TOKEN_PATH`` or an
existing token in ``KFP_TOKEN``) and are never printed or written into the spec.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kfp
import yaml
from kfp import compiler

from grmodel.atomic import atomic_file
from grmodel.data.storage import is_uri
from grmodel.datasource import default_remote
from grmodel.pipeline.params import PipelineParams
from grmodel.redact import strip_credentials
from grmodel.versioning import GIT_URL, read_version

log = logging.getLogger(__name__)

COMPILED_PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "grmodel_pipeline.yaml"
TOKEN_ENV = "KFP_TOKEN"  # noqa: S105 - the name of a variable, not a secret


class SubmitError(ValueError):
    """Arguments that would submit a run bound to fail (names the parameter and the rule)."""


@dataclass(frozen=True)
class Submitted:
    kind: str  # "run" or "recurring run"
    id: str
    experiment_id: str
    link: str


def compile_pipeline(out_path: str | Path, train_pvc: str | None = None,
                     spark_pvc: str | None = None) -> Path:
    """Write the pipeline's IR YAML to ``out_path`` (atomically); ``train_pvc`` compiles the
    variant whose GR step shares that claim with multi-replica PyTorchJobs, ``spark_pvc`` the
    one whose data steps share that claim with SparkApplications (engine=spark)."""
    # lazy: the DAG (pipelines/) is built on this package; it is loaded only to compile it
    from pipelines.grmodel_pipeline import build_pipeline

    out = Path(out_path)
    with atomic_file(out) as tmp:
        compiler.Compiler().compile(build_pipeline(train_pvc, spark_pvc),
                                    str(tmp.with_suffix(".yaml")))
        tmp.with_suffix(".yaml").replace(tmp)
    return out


def is_compiled_pipeline(path: str | Path) -> bool:
    """Whether ``path`` holds a pipeline that ``grmodel pipeline compile`` wrote: the header the
    KFP compiler writes, naming a grmodel pipeline (what a later compile may replace)."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            head = [handle.readline() for _ in range(2)]
    except (OSError, UnicodeDecodeError):
        return False
    return head[0].strip() == "# PIPELINE DEFINITION" and head[1].startswith("# Name: grmodel")


def load_compiled(path: str | Path = COMPILED_PIPELINE) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec of a compiled package and its Kubernetes platform spec (``{}`` if none):
    the YAML holds them as two documents."""
    docs = list(yaml.safe_load_all(Path(path).read_text()))
    return docs[0], docs[1] if len(docs) > 1 else {}


def cluster_params(params: PipelineParams, repo: str | Path = ".", *, recurring: bool = False
                   ) -> PipelineParams:
    """Fill what a cluster run needs from this checkout, and refuse what would fail later.

    With ``data_source=dvc``: ``data_repo`` defaults to the checkout's ``origin`` URL. A
    single run's ``data_version`` defaults to what the checkout's ``data.dvc`` records (pinned:
    the run trains on the version seen when it was submitted); a ``recurring`` run's stays
    empty, so each run resolves the repository's head when it starts. A path source defaults
    ``snapshot_remote`` to the checkout's default DVC remote. The MLflow tracking URI defaults
    to ``MLFLOW_TRACKING_URI`` and must be set.
    """
    values: dict[str, Any] = {}
    if params.data_source == "dvc":
        if not params.data_repo:
            values["data_repo"] = _origin_url(Path(repo))
        if not params.data_version and not recurring:
            values["data_version"] = read_version(repo).md5
    if recurring and params.data_version:
        log.warning("data_version=%s is pinned: every run of the recurring run trains on it;"
                    " leave it empty for each run to train on what the data repository holds"
                    " when it starts", params.data_version)
    if params.data_source in ("path", "logs") and not params.snapshot_remote:
        remote = default_remote(repo)
        if remote and is_uri(remote):  # a folder on this machine is no use to cluster pods
            values["snapshot_remote"] = remote
    repo_url = values.get("data_repo", params.data_repo)
    if params.data_source == "dvc" and not _remote_git_url(repo_url):
        raise SubmitError(f"data_repo {repo_url!r} is a path on this machine, which cluster pods"
                          " cannot read; pass data_repo=<the repository's git URL> (https://, ssh://"
                          " or git@host:path)")
    if params.data_source == "logs" and not is_uri(repo_url):
        raise SubmitError(f"data_repo {repo_url!r} is a path on this machine, which cluster pods"
                          " cannot read; pass data_repo=<the logs' object-store URI> (s3a://, gs://,"
                          " abfs:// or hdfs://)")
    if not params.mlflow_tracking_uri:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri:
            raise SubmitError("mlflow_tracking_uri is empty and MLFLOW_TRACKING_URI is unset (rule:"
                              " every run is tracked and registered in MLflow)")
        values["mlflow_tracking_uri"] = uri
    if params.mlflow_tracking_uri.startswith("sqlite:") or values.get(
            "mlflow_tracking_uri", "").startswith("sqlite:"):
        raise SubmitError("mlflow_tracking_uri is a sqlite file: pods on a cluster share no disk;"
                          " use the MLflow server's http(s) URI")
    # Credentials never travel as run parameters (KFP shows and stores them): the pods read
    # them from the grmodel-credentials Secret.
    for name in ("data_repo", "mlflow_tracking_uri", "snapshot_remote"):
        given = values.get(name, getattr(params, name))
        if strip_credentials(given) != given:
            values[name] = strip_credentials(given)
            log.warning("%s: credentials removed from the URL; on the cluster they come from the"
                        " grmodel-credentials Secret (see docs/pipeline.md)", name)
    return params.with_values(values)


def kfp_client(host: str, namespace: str | None = None) -> Any:
    return kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get(TOKEN_ENV) or None)


def submit(
    host: str,
    params: PipelineParams,
    *,
    package: str | Path = COMPILED_PIPELINE,
    experiment: str = "grmodel",
    run_name: str | None = None,
    namespace: str | None = None,
    enable_caching: bool | None = None,
    service_account: str | None = None,
) -> Submitted:
    """Start one run of the compiled pipeline ``package`` with ``params``."""
    client = kfp_client(host, namespace)
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    run = client.run_pipeline(
        experiment_id, run_name or f"grmodel-{params.data_version[:12] or 'run'}",
        pipeline_package_path=str(package), params=params.arguments(),
        enable_caching=enable_caching, service_account=service_account,
    )
    return Submitted("run", run.run_id, experiment_id, f"{host.rstrip('/')}/#/runs/details/{run.run_id}")


def schedule(
    host: str,
    params: PipelineParams,
    *,
    cron: str,
    package: str | Path = COMPILED_PIPELINE,
    experiment: str = "grmodel",
    job_name: str = "grmodel-scheduled",
    max_concurrency: int = 1,
    catchup: bool = False,
    namespace: str | None = None,
    enable_caching: bool | None = None,
    service_account: str | None = None,
) -> Submitted:
    """Create a recurring run of ``package`` on ``cron`` (5 fields, or KFP's 6 with seconds)."""
    if max_concurrency < 1:
        raise SubmitError(f"max_concurrency={max_concurrency}: must be >= 1")
    client = kfp_client(host, namespace)
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    job = client.create_recurring_run(
        experiment_id, job_name, cron_expression=kfp_cron(cron), max_concurrency=max_concurrency,
        no_catchup=not catchup, params=params.arguments(), pipeline_package_path=str(package),
        enable_caching=enable_caching, service_account=service_account,
    )
    return Submitted("recurring run", job.recurring_run_id, experiment_id,
                     f"{host.rstrip('/')}/#/recurringrun/details/{job.recurring_run_id}")


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,\-#LW]+$")


def kfp_cron(expression: str) -> str:
    """KFP's six-field cron (seconds first) from a standard five-field one; six pass through."""
    fields = expression.split()
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise SubmitError(f"cron {expression!r}: expected 5 fields (minute hour day month weekday)"
                          " or KFP's 6 (with seconds first)")
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


def _remote_git_url(text: str) -> bool:
    return bool(GIT_URL.match(text)) and not text.startswith("file:")


def _origin_url(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "remote", "get-url", "origin"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        raise SubmitError(f"{repo}: no git remote 'origin'; pass data_repo=<git URL of the data"
                          " repository> (rule: cluster pods read the data version from git + DVC)"
                          ) from None
    return out.stdout.strip()
