"""The pipeline's parameters and their defaults: one record shared by the DAG and the CLI."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASELINES = ["cread", "tpm"]
# List parameters that `--param NAME=[...]` adds to (so the fixes above stay) and
# `--param NAME!=[...]` replaces.
APPENDED_PARAMS = frozenset({"overrides"})


@dataclass
class PipelineParams:
    """Every run-time parameter of the grmodel pipeline (names as the compiled YAML has them)."""

    # Data: source dvc | generate | path | logs; data_repo is the git + DVC repository (dvc),
    # the directory (path) or the root of the logs by day, a path or a URI (logs).
    # data_version "" = resolved when the run starts (dvc: what data.dvc records at the
    # repository's head); a version pins it.
    data_source: str = "dvc"
    data_repo: str = ""
    data_version: str = ""
    preset: str = "default"  # generate: the synth preset
    data_seed: int = 2024  # generate: the generator's seed
    # A windowed run (window_days >= 2) is as of a day: trains on the window_days before it
    # (the last of them its valid split) and is tested on it. as_of "" = the last complete day
    # before the run's scheduled time (KFP's), or before it starts. 0: no window.
    as_of: str = ""
    window_days: int = 0
    # The DVC remote (URL or folder) a path source is snapshotted into, so the run can be
    # reproduced; with logs, the window is snapshotted too. "" with a path source: refused.
    snapshot_remote: str = ""
    split: str = "authors"  # authors | random | chronological; a windowed run splits forward
    label_mode: str = "watch_time"
    # pandas: ingest, vocabulary and encoding in one process (the embedded main job's default);
    # spark: Spark DataFrames (grmodel/data/spark/), as SparkApplications with --spark-pvc.
    engine: str = "pandas"
    # Models: [MODEL:]section.key=value config overrides (over the library defaults and the
    # models' named defaults, grmodel.config.MODEL_DEFAULTS), the baselines, seeds per model.
    overrides: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    seeds: int = 1
    train_replicas: int = 1  # > 1: GR trains as a PyTorchJob with this many replicas
    # Drift: the new data against the champion's training reference (grmodel/validation/
    # drift.py). warn: flagged in the console, MLflow and the report, the run goes on; stop: the
    # run fails (exit 1) naming the drifted columns. Thresholds: KL(new || reference) per
    # column, each quantile within a share of the reference's q90 - q10, the share of rows
    # with a value the reference never had; all widened for sampling noise so that a run of
    # unchanged data is flagged with probability drift_false_alarm at most.
    drift_policy: str = "warn"
    drift_max_kl: float = 0.05
    drift_quantile_tolerance: float = 0.1
    drift_max_unseen: float = 0.5
    drift_false_alarm: float = 0.01
    # Promotion gate.
    min_mae_rel_improvement: float = 0.01
    max_xauc_drop: float = 0.005
    require_beats_baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    # Flag (never decide on) a champion whose MAE on the test day exceeds its MAE when it was
    # promoted by more than this, relative.
    max_champion_decay: float = 0.2
    # MLflow.
    mlflow_tracking_uri: str = ""
    mlflow_experiment: str = "grmodel"
    mlflow_artifact_root: str = ""  # required with a database URI (sqlite:///...)
    registered_model_name: str = "grmodel-gr"

    def arguments(self) -> dict[str, Any]:
        """The run's arguments, as ``kfp.Client`` and the pipeline function take them."""
        return dataclasses.asdict(self)

    def with_values(self, values: dict[str, Any]) -> PipelineParams:
        """A copy with ``values`` set; unknown names are an error naming the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown pipeline parameter(s) {unknown}; known: {sorted(known)}")
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for name, value in values.items():
            check_param(name, types[name], value)
        return dataclasses.replace(self, **values)


# Whole-number parameters and their smallest value (the seed also has a largest).
_AT_LEAST = {"seeds": 1, "train_replicas": 1, "data_seed": 0}
_MAX_SEED = 2**32 - 1


def check_param(name: str, kind: str, value: Any) -> None:
    """Refuse, before any run starts, a parameter value of the wrong type or out of range: a
    float threshold that is NaN or infinite, a count below 1, a list that is not of strings."""
    def fail(rule: str) -> None:
        raise ValueError(f"--param {name}={value!r}: {rule} (rule: pipeline parameters have the"
                         " types and ranges of grmodel/pipeline/params.py)")

    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str" and not isinstance(value, str):
        fail("expected text")
    if kind == "int":
        if not (is_number and float(value).is_integer()):
            fail("expected a whole number")
        if value < _AT_LEAST.get(name, value) or (name == "data_seed" and value > _MAX_SEED):
            fail(f"expected a whole number >= {_AT_LEAST[name]}"
                 + (f" and <= {_MAX_SEED}" if name == "data_seed" else ""))
    if kind == "float" and not (is_number and math.isfinite(value)):
        fail("expected a finite number")
    if kind == "list[str]" and not (isinstance(value, list)
                                    and all(isinstance(v, str) for v in value)):
        fail("expected a JSON list of strings")
    _check_meaning(name, value, fail)


def _check_meaning(name: str, value: Any, fail: Callable[[str], None]) -> None:
    """The rules of the parameters whose values mean more than their type: a windowed run's
    day and window, the drift policy and thresholds (each rule where the value is used)."""
    # lazy: windows and drift bounds are needed only for these parameters
    from grmodel.data.io import DataSpecError
    from grmodel.data.windows import Window, parse_day

    try:
        if name == "as_of" and value:
            parse_day(value, "as_of")
        elif name == "window_days" and value:
            Window(parse_day("1970-01-01"), value)
        elif name == "drift_policy":
            from grmodel.validation.drift import DRIFT_POLICIES

            if value not in DRIFT_POLICIES:
                fail(f"expected one of {list(DRIFT_POLICIES)}")
        elif name.startswith("drift_"):
            from grmodel.validation.drift import DriftBounds

            DriftBounds(**{name.removeprefix("drift_"): value})
    except (DataSpecError, ValueError) as exc:
        if str(exc).startswith("--param"):
            raise
        raise ValueError(f"--param {name}={value!r}: {exc}") from None
