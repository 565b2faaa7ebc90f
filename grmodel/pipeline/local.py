"""Run the whole pipeline on this machine through ``kfp.local`` (the README's main job).

Every component runs as a subprocess of this Python environment (``SubprocessRunner`` without a
venv of its own), with the same artifacts and parameters as on Kubeflow; only the resource,
GPU and image settings are ignored. Outputs land under ``<workdir>/kfp/<pipeline>-<time>/``.

Each run also gets a folder of its own, ``<workdir>/run-<UTC time>/``: the full log
(``log.txt``) and stable links into the KFP artifact tree (``raw/``, ``processed/``,
``models/<row>/``, ``report/``, ``decision/``, ``mlflow.db``, ``kfp/``); ``<workdir>/latest``
links to the newest.
The terminal shows one line per stage (``grmodel.pipeline.console``).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kfp import local

from grmodel.comparison.report import results_table
from grmodel.datasource import default_remote
from grmodel.pipeline.console import RunConsole
from grmodel.pipeline.params import PipelineParams
from grmodel.pipeline.stages.record import STAGE_RECORD
from grmodel.progress import EVENTS_ENV

LATEST = "latest"
LOG_FILE = "log.txt"


class PipelineFailed(RuntimeError):
    """A local pipeline run whose task failed (the message names it and the cause): a bug in
    a step, unless it is one of the two kinds below."""


class PipelineInputFailed(PipelineFailed, ValueError):
    """A step refused what it was given: a failed validation, bad data or config, a collapsed
    model (the README's exit status 1). Such a failure is deterministic: never retried."""


class PipelineEnvironmentFailed(PipelineFailed, OSError):
    """A step could not reach a service or the disk (the README's exit status 3)."""


# What the exit status of a failed run says, by the kind of its first failed step's error.
_RULES = {
    PipelineInputFailed: "a failed check or bad input fails its step at once, without retries:"
                         " the same data, config and seed fail the same way",
    PipelineEnvironmentFailed: "the MLflow server, the data remote and the disk must be there;"
                               " rerun when they are (finished steps come from the cache)",
}
COLLAPSE_LINE = ("a collapse is deterministic (the same data, config and seed collapse again),"
                 " so it is not retried")


@dataclass
class LocalRun:
    """Where a finished local run left its results."""

    run_dir: Path  # the KFP artifact tree of the run
    params: PipelineParams
    seconds: float
    folder: Path  # the run's own folder: log.txt and the stable links

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


def local_params(params: PipelineParams, repo: str | Path = ".") -> PipelineParams:
    """A local run's defaults from the checkout ``repo``: a path source is snapshotted into
    its default DVC remote (so the run can be reproduced) unless ``snapshot_remote`` is set."""
    if params.data_source == "path" and not params.snapshot_remote:
        remote = default_remote(repo)
        if remote:
            return params.with_values({"snapshot_remote": remote})
    return params


def run_local(params: PipelineParams, workdir: str | Path, *, verbose: bool = False,
              terminal: TextIO | None = None) -> LocalRun:
    """Run the pipeline with ``params`` under ``workdir``; raises :class:`PipelineFailed`.

    ``terminal`` (default: stdout) gets the stage lines, or with ``verbose`` everything the
    log gets."""
    # lazy: the DAG (pipelines/) is built on this package; it is loaded only to run it
    from pipelines.grmodel_pipeline import PIPELINE_NAME, build_pipeline

    grmodel_pipeline = build_pipeline(scheduled=False)  # kfp.local has no scheduled time

    work = Path(workdir).resolve()
    root = work / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    folder = _new_folder(work)
    before = set(root.glob(f"{PIPELINE_NAME}-*"))
    started = time.perf_counter()
    with open(folder / LOG_FILE, "w", encoding="utf-8", buffering=1) as log:  # tail -f works
        console = RunConsole(log, terminal or sys.stdout, root, before, verbose=verbose)
        console.say(f"{PIPELINE_NAME}: running locally (kfp.local; images, CPU/memory requests"
                    f" and GPUs apply on Kubeflow only); full log: {_shown(folder / LOG_FILE)}")
        failure = None
        with _captured(console), _env(EVENTS_ENV, "1"):
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
            try:
                grmodel_pipeline(**params.arguments())
            except RuntimeError as exc:  # kfp.local: "Task 'x' finished with status FAILURE"
                failure = str(exc)
        console.finish()
    new = sorted(set(root.glob(f"{PIPELINE_NAME}-*")) - before)
    if new:
        link_outputs(new[-1], folder, work)
    _link(work / LATEST, folder)
    if failure is not None:
        causes = "; ".join(console.failures) or failure
        kind = failure_kind(console.causes[0][1] if console.causes else "")
        rule = _RULES.get(kind)
        if any(name.endswith("ModelCollapsed") for _, name in console.causes):
            rule = COLLAPSE_LINE
        raise kind(f"local pipeline run failed: {causes} (log: {_shown(folder / LOG_FILE)})"
                   + (f" (rule: {rule})" if rule else ""))
    if not new:
        raise PipelineFailed(f"local pipeline run left no run directory under {root}")
    return LocalRun(new[-1], params, time.perf_counter() - started, folder)


def failure_kind(name: str) -> type[PipelineFailed]:
    """The kind of failure an exception raised in a step means, from its qualified name as its
    traceback printed it (``grmodel.validation.report.ValidationFailed``): bad input (a
    ``ValueError`` or ``LookupError``, a missing file), the environment (another ``OSError``) or
    a bug. The class is looked up among built-ins, grmodel's own modules and modules already
    imported here: a log line never makes this process import another package."""
    module_name, _, class_name = name.rpartition(".")
    module: Any = builtins if not module_name else sys.modules.get(module_name)
    if module is None and (module_name + ".").startswith("grmodel."):
        try:
            with warnings.catch_warnings():  # a library's import-time chatter is not the error
                warnings.simplefilter("ignore")
                module = importlib.import_module(module_name)
        except ImportError:
            module = None
    cls = getattr(module, class_name, None) if module is not None else None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return PipelineFailed
    if issubclass(cls, FileNotFoundError | IsADirectoryError | NotADirectoryError | ValueError
                  | LookupError):
        return PipelineInputFailed
    if issubclass(cls, OSError):
        return PipelineEnvironmentFailed
    return PipelineFailed


def _new_folder(work: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(100):
        folder = work / f"run-{stamp}{f'-{n}' if n else ''}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise PipelineFailed(f"{work}: cannot create a run folder run-{stamp}")


@contextlib.contextmanager
def _captured(console: Any) -> Iterator[None]:
    """kfp.local's output, its log and warnings into the console. Around each step kfp.local
    swaps the root logger's handlers and patches ``print`` (to indent), and parallel steps
    restore them out of order: the handlers it falls back to write to the console too, and
    ``print`` is restored afterwards."""
    printer = builtins.print
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = [logging.StreamHandler(console)]
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console), \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Task .* have no effect in the current local runner")
            yield
    finally:
        builtins.print = printer
        root.handlers, root.level = handlers, level


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def link_outputs(run_dir: Path, folder: Path, work: Path) -> None:
    """Stable names for a run's outputs in its folder: links into the KFP artifact tree."""
    links = {"kfp": run_dir, "raw": run_dir / "fetch-data" / "raw" / "raw",
             "processed": run_dir / "ingest" / "processed",
             "report": run_dir / "evaluate" / "evaluation",
             "decision": run_dir / "register" / "decision_record", "mlflow.db": work / "mlflow.db"}
    for record in sorted(run_dir.glob("**/model/" + STAGE_RECORD)):
        row = json.loads(record.read_text())["stage"].removeprefix("train_")
        seeds = sorted(p for p in record.parent.glob("seed*") if p.is_dir())
        for i, seed in enumerate(seeds):  # models/<row>: the first seed; models/<row>-seed<k>
            links[f"models/{row}" if i == 0 else f"models/{row}-{seed.name}"] = seed
    for name, target in links.items():
        if target.exists():
            _link(folder / name, target)


def _link(link: Path, target: Path) -> None:
    """A relative symlink, replacing only a link (never a file or folder someone else made)."""
    if link.exists() and not link.is_symlink():
        raise PipelineFailed(f"{link}: exists and is not a link grmodel made; move it away")
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent), target_is_directory=target.is_dir())
    os.replace(tmp, link)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def summary(run: LocalRun) -> str:
    """What the main job prints at the end: the table and where everything is."""
    report = json.loads((run.evaluation_dir / "report.json").read_text())
    decision = run.decision
    params = run.params
    verdict = (f"{params.registered_model_name} version {decision['challenger_version']}"
               f" (alias challenger): {decision['verdict']}")
    if decision["verdict"] == "promoted":
        verdict += " → champion"
    decay = decision.get("champion_decay") or {}
    if decay.get("decay") is not None:
        verdict += (f"; champion v{decay['version']} MAE {decay['mae']:.4g} vs"
                    f" {decay['mae_at_promotion']:.4g} when promoted: decay {decay['decay']:+.1%}"
                    + (f", FLAGGED (> {decay['max_decay']:.0%})" if decay.get("flagged") else ""))
    where = run.folder.parent / LATEST if (run.folder.parent / LATEST).resolve() == run.folder else run.folder
    return "\n".join([
        results_table(report),
        "",
        f"data version: {decision['data_version']}, {report['dataset']['test_rows']} test rows",
        f"report:    {_shown(where / 'report' / 'report.md')} (and report.html, figures/)",
        f"dataset:   {_shown(where / 'processed')}",
        f"models:    {_shown(where / 'models')}/<row>",
        f"log:       {_shown(run.folder / LOG_FILE)}",
        f"registry:  {verdict}",
        f"MLflow:    {params.mlflow_tracking_uri} (experiment {params.mlflow_experiment});"
        f" load with models:/{params.registered_model_name}@challenger",
        f"took {run.seconds / 60:.1f} min",
    ])
