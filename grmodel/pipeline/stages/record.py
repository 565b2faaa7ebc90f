"""What every stage leaves in its output directory: a :class:`StageRecord` (``stage.json``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grmodel.atomic import write_json_atomic

STAGE_RECORD = "stage.json"


class StageError(ValueError):
    """A stage that cannot run on the inputs it was given (names the input and the rule)."""


ENGINES = ("pandas", "spark")  # the engines of the data stages (ingest, vocabulary, encoding)


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise StageError(f"engine {engine!r}: expected one of {list(ENGINES)}")


@dataclass
class StageRecord:
    """What a stage did, kept beside its output and logged to MLflow at the end of the run."""

    stage: str
    params: dict[str, Any] = field(default_factory=dict)  # configs, logged flattened as params
    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # curves by prefix
    artifacts: list[str] = field(default_factory=list)  # paths relative to the stage directory
    started: float = 0.0  # Unix seconds
    ended: float = 0.0
    mlflow_run_id: str = ""  # the run the stage logged while it ran ("": not tracked live)

    def write(self, out_dir: Path) -> None:
        write_json_atomic(out_dir / STAGE_RECORD, dataclasses.asdict(self))

    @classmethod
    def read(cls, stage_dir: str | Path) -> StageRecord:
        path = Path(stage_dir) / STAGE_RECORD
        if not path.is_file():
            raise StageError(f"{path}: not found (rule: every stage output holds its {STAGE_RECORD})")
        return cls(**json.loads(path.read_text()))
