"""Run the whole pipeline on this machine through ``kfp.local`` (the README's main job).

Every component runs as a subprocess of this Python environment (``SubprocessRunner`` without a
venv of its own), with the same artifacts and parameters as on Kubeflow; only the resource,
GPU and image settings are ignored. Outputs land under ``<workdir>/kfp/<pipeline>-<time>/``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grmodel.pipeline.params import PipelineParams

log = logging.getLogger(__name__)


class PipelineFailed(RuntimeError):
    """A local pipeline run whose task failed (the message names it and the cause)."""


@dataclass
class LocalRun:
    """Where a finished local run left its results."""

    run_dir: Path
    params: PipelineParams
    seconds: float

    def output(self, task: str, name: str) -> Path:
        path = self.run_dir / task / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: task {task!r} has no output {name!r} in this run")
        return path

    @property
    def evaluation_dir(self) -> Path:
        return self.output("evaluate", "evaluation")

    @property
    def decision(self) -> dict[str, Any]:
        return json.loads((self.output("register", "decision_record") / "decision.json").read_text())


def local_tracking(workdir: Path) -> dict[str, str]:
    """MLflow on a sqlite file beside the run, artifacts in a directory beside it."""
    return {"mlflow_tracking_uri": f"sqlite:///{(workdir / 'mlflow.db').resolve()}",
            "mlflow_artifact_root": str((workdir / "mlartifacts").resolve())}


def run_local(params: PipelineParams, workdir: str | Path) -> LocalRun:
    """Run the pipeline with ``params`` under ``workdir``; raises :class:`PipelineFailed`."""
    from kfp import local

    from pipelines.grmodel_pipeline import PIPELINE_NAME, grmodel_pipeline

    work = Path(workdir).resolve()
    root = work / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob(f"{PIPELINE_NAME}-*"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    log.info("local run: images, CPU/memory requests and GPUs apply on Kubeflow only")
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Task .* have no effect in the current local runner")
            grmodel_pipeline(**params.arguments())
    except RuntimeError as exc:  # kfp.local: "Task 'x' finished with status FAILURE"
        raise PipelineFailed(f"local pipeline run under {root} failed: {exc}") from None
    new = sorted(set(root.glob(f"{PIPELINE_NAME}-*")) - before)
    if not new:
        raise PipelineFailed(f"local pipeline run left no run directory under {root}")
    return LocalRun(new[-1], params, time.perf_counter() - started)


def summary(run: LocalRun) -> str:
    """What the main job prints at the end: the table and where everything is."""
    from grmodel.comparison.report import results_table

    report = json.loads((run.evaluation_dir / "report.json").read_text())
    decision = run.decision
    params = run.params
    verdict = (f"{params.registered_model_name} version {decision['challenger_version']}"
               f" (alias challenger): {decision['verdict']}")
    if decision["verdict"] == "promoted":
        verdict += " → champion"
    return "\n".join([
        results_table(report),
        "",
        f"data version: {decision['data_version']}, {report['dataset']['test_rows']} test rows",
        f"report:  {run.evaluation_dir / 'report.md'}",
        f"figures: {run.evaluation_dir / 'figures'}",
        f"models:  {run.run_dir}",
        f"registry: {verdict}",
        f"MLflow:  {params.mlflow_tracking_uri} (experiment {params.mlflow_experiment});"
        f" load with models:/{params.registered_model_name}@challenger",
        f"took {run.seconds / 60:.1f} min",
    ])
