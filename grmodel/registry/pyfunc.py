"""MLflow pyfunc packaging of a trained model, and reading one back.

Any model of the zoo is logged as an MLflow pyfunc model whose loader module is
``grmodel.registry`` (it re-exports :func:`_load_pyfunc`), so nothing is pickled. The model holds
a code reference (that loader module, and ``grmodel==<version>`` among its pinned pip
requirements), an input signature naming the feature columns, and ``data/checkpoint/``: the
weights (``model.pt``, a state_dict read with ``weights_only=True``; a GBDT's ``model.txt``,
LightGBM's text format), ``checkpoint.json`` and, as
JSON, the config (``config.json``), the model's label state (``label_state.json``: GR's
vocabulary, a baseline's label statistics) and the feature encoders (the processed dataset's
manifest) and, when logged with its processed dataset, ``drift_reference.json`` (the profile
of its training rows that the drift check compares new data with: grmodel/data/profile.py).
``mlflow.pyfunc.load_model`` and ``mlflow models serve`` call :func:`_load_pyfunc`; predict
takes a DataFrame of feature ids and returns watch time. Serve it where grmodel is installed
(the project's image):
``mlflow models serve -m models:/NAME@champion --env-manager local``.
"""


from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from grmodel import __version__
from grmodel.checkpoint import (
    META_FILE,
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
)
from grmodel.data.profile import write_profile
from grmodel.distributed import resolve_device
from grmodel.features import read_manifest, read_split
from grmodel.locate import model_dir
from grmodel.predict import predict_frame
from grmodel.tracking import connect

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

    from grmodel.models import ZooModel

# MLflow calls ``<loader module>._load_pyfunc``; kept "grmodel.registry" (the package, which
# re-exports it) so that models logged before the package was split still load.
LOADER_MODULE = "grmodel.registry"
DATA_DIR = "checkpoint"  # the pyfunc data directory: data/checkpoint/ in the MLflow model
DEFAULT_BATCH_SIZE = 4096
# Distributions pinned in every logged model besides grmodel (this environment's versions).
PINNED_REQUIREMENTS = ("torch", "lightgbm", "numpy", "pandas", "mlflow")


# --- the pyfunc model -------------------------------------------------------------------------


class WatchTimePyfunc:
    """What MLflow's loader returns: a checkpoint that scores DataFrames in batches."""

    def __init__(self, model: ZooModel):
        self.model = model

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        batch_size = int((params or {}).get("batch_size", DEFAULT_BATCH_SIZE))
        return predict_frame(self.model, model_input, batch_size=batch_size)


def _load_pyfunc(data_path: str) -> WatchTimePyfunc:
    """MLflow's entry point (:data:`LOADER_MODULE` re-exports it)."""
    model, _ = load_checkpoint(data_path, resolve_device("auto"))
    return WatchTimePyfunc(model)


def pip_requirements() -> list[str]:
    """``grmodel==0.1.0``, ``torch==2.13.0``, ...: exact versions, local build tags (+cpu) dropped."""
    pins = [f"{name}=={installed_version(name).split('+')[0]}" for name in PINNED_REQUIREMENTS]
    return [f"grmodel=={__version__}", *pins]


def log_model(
    model_dir: str | Path, processed_dir: str | Path | None = None, name: str | None = None
) -> ModelInfo:
    """Log a trained model directory into the active run as a pyfunc model named ``name``
    (default: the model's name, e.g. ``gr``). With ``processed_dir`` its manifest is logged as
    the feature encoders, the profile of its train split as the drift reference and five test
    rows as the input example."""
    # lazy: mlflow (seconds to import) only to log or download a model; a model folder is read
    # without it (`grmodel predict`, `grmodel evaluate`)
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("registry.log_model: no active MLflow run (use tracking.stage_run)")
    model_dir = Path(model_dir)
    model, meta = load_checkpoint(model_dir)  # refuse to log what cannot be loaded back
    encoders = read_manifest(processed_dir) if processed_dir else {"features": meta["features"]}
    example = read_split(processed_dir, "test", 5)[model.schema.names] if processed_dir else None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / DATA_DIR
        data.mkdir()
        for file_name in checkpoint_files(model_dir):
            shutil.copy2(model_dir / file_name, data / file_name)
        if processed_dir:  # the reference the drift check compares later data with
            write_profile(processed_dir, data)
        for file_name, payload in (("config.json", meta["config"]),
                                   ("label_state.json", meta["label_state"]),
                                   ("feature_encoders.json", encoders)):
            (data / file_name).write_text(json.dumps(payload, indent=2, sort_keys=True))
        return mlflow.pyfunc.log_model(
            name=name or meta["model_name"],
            loader_module=LOADER_MODULE,
            data_path=str(data),
            pip_requirements=pip_requirements(),
            signature=_signature(model.schema.names),
            input_example=example,
            metadata={"grmodel_model": meta["model_name"], "grmodel_version": __version__,
                      "checkpoint_format": meta["format"]},
        )


def _signature(feature_names: list[str]) -> ModelSignature:
    # lazy: mlflow only to log a model (see log_model)
    from mlflow.models import ModelSignature  # noqa: F811 - the runtime import of the type
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([ColSpec("long", name) for name in feature_names]),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,), "watch_time")]),
        params=ParamSchema([ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE)]),
    )


def resolve_model_uri(
    uri_or_dir: str | Path, tracking_uri: str | None = None, dst_dir: str | Path | None = None
) -> Path:
    """The local checkpoint directory for a model directory, a local MLflow model, or an MLflow
    URI (``models:/NAME@champion``, ``models:/NAME/3``, ``runs:/RUN/gr``), downloading the latter
    into ``dst_dir`` (default: a temporary directory removed when the process exits)."""
    text = str(uri_or_dir)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", text) is None:  # a local path, not a URI
        path = Path(text)
        if (path / "MLmodel").is_file() and not (path / META_FILE).is_file():
            return _checkpoint_dir(path)  # an MLflow model on disk
        return model_dir(path)  # a checkpoint directory, or a pipeline artifact folder holding one
    # lazy: mlflow only for an MLflow URI (see log_model)
    import mlflow

    connect(tracking_uri)
    if dst_dir is None:
        dst_dir = tempfile.mkdtemp(prefix="grmodel-model-")
        atexit.register(shutil.rmtree, dst_dir, ignore_errors=True)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=str(dst_dir))
    except mlflow.exceptions.MlflowException as exc:
        raise CheckpointError(f"{text}: cannot download the model ({exc.message})") from None
    return _checkpoint_dir(Path(local))


def _checkpoint_dir(mlflow_model_dir: Path) -> Path:
    """``data/checkpoint`` of a grmodel pyfunc model, checked via its MLmodel file."""
    mlmodel = mlflow_model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise CheckpointError(f"{mlmodel}: not found (rule: an MLflow model has an MLmodel file)")
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
    if flavor.get("loader_module") != LOADER_MODULE or not flavor.get("data"):
        raise CheckpointError(f"{mlmodel}: not a grmodel model (rule: loader_module {LOADER_MODULE})")
    return mlflow_model_dir / flavor["data"]
