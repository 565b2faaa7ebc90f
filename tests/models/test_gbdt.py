"""The GBDT baseline: a real LightGBM fit on tiny planted data, its text checkpoint (digested,
refused when altered), prediction through the zoo's paths, and the CLI's predict/evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grmodel import metrics
from grmodel.checkpoint import META_FILE, CheckpointError, load_checkpoint
from grmodel.cli import main as cli_main
from grmodel.config import ConfigError, RunConfig, model_defaults
from grmodel.evaluate import TRAIN_MEDIAN, evaluate_models
from grmodel.features import FeatureSchema, label_array, read_manifest, read_split
from grmodel.models import is_array_model
from grmodel.models.gbdt import GBDTModel
from grmodel.predict import predict_frame
from grmodel.training.loop import train_model
from grmodel.training.records import dataset_fingerprint, finished_run, write_training_record

QUICK = ["head.gbdt_rounds=200", "head.gbdt_early_stop=20", "head.gbdt_leaves=15",
         "head.gbdt_threads=1", "train.progress=false"]


def gbdt_config(dataset: Path, *overrides: str) -> RunConfig:
    return RunConfig().with_overrides([
        "model_name=gbdt", *model_defaults("gbdt"), f"data.processed_dir={dataset}", *QUICK,
        *overrides])


@pytest.fixture(scope="module")
def trained_gbdt(planted_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("gbdt") / "model"
    config = gbdt_config(planted_dataset)
    result = train_model(config, out)
    write_training_record(result, config, dataset_fingerprint(planted_dataset), 1.0)
    return config, result, out


def test_fits_the_planted_signal_and_keeps_its_best_round(trained_gbdt, planted_dataset):
    config, result, out = trained_gbdt
    assert is_array_model("gbdt") and not is_array_model("gr")
    files = sorted(p.name for p in out.iterdir())
    assert {"model.txt", META_FILE, "training.json"} <= set(files) and "model.pt" not in files
    meta = json.loads((out / META_FILE).read_text())
    assert meta["model_name"] == "gbdt" and meta["collapse"]["collapsed"] is False
    assert meta["label_state"]["options"]["leaves"] == 15
    # The history holds the kept round with its validation scores, as the checkpoint records.
    kept = [h for h in result.history if h["epoch"] == result.best_epoch]
    assert kept and kept[0]["valid_mae"] == pytest.approx(result.best_valid["mae"])
    assert result.best_valid["mae"] == min(h["valid_mae"] for h in result.history)
    model, _ = load_checkpoint(out)
    test = read_split(planted_dataset, "test")
    y = label_array(test, "label")
    pred = predict_frame(model, test)
    median = float(np.median(label_array(read_split(planted_dataset, "train"), "label")))
    assert metrics.mae(y, pred) < 0.9 * metrics.mae(y, np.full_like(y, median))
    assert pred.min() >= 0.0
    assert finished_run(out, config, dataset_fingerprint(planted_dataset)) is not None


def test_same_config_and_seed_give_the_same_model(trained_gbdt, tmp_path):
    config, result, out = trained_gbdt
    again = train_model(config, tmp_path / "again")
    assert (tmp_path / "again" / "model.txt").read_text() == (out / "model.txt").read_text()
    assert again.best_valid == result.best_valid


def test_an_altered_or_foreign_model_file_is_refused(trained_gbdt, tmp_path):
    _, _, out = trained_gbdt
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    text = (copy / "model.txt").read_text()
    (copy / "model.txt").write_text(text.replace("num_leaves=", "num_leaves=9", 1))
    with pytest.raises(CheckpointError, match=r"model\.txt: sha256 differs"):
        load_checkpoint(copy)
    # A file whose digest matches but that LightGBM cannot parse: one line, no library trace.
    (copy / "model.txt").write_text("not a model\n")
    meta = json.loads((copy / META_FILE).read_text())
    import hashlib
    meta["sha256"]["model.txt"] = hashlib.sha256(b"not a model\n").hexdigest()
    (copy / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model\.txt: not a readable gbdt model"):
        load_checkpoint(copy)


def test_options_are_checked():
    with pytest.raises(ConfigError, match=r"head\.gbdt_bagging=1\.5"):
        GBDTModel.fit_label_state(np.ones(3), RunConfig().with_overrides(["head.gbdt_bagging=1.5"]))
    with pytest.raises(ConfigError, match=r"head\.gbdt_depth.*not an option"):
        GBDTModel.fit_label_state(np.ones(3), RunConfig().with_overrides(["head.gbdt_depth=3"]))
    schema = FeatureSchema.from_dict(
        {"fields": [{"name": "a", "side": "user", "cardinality": 4}]})
    model = GBDTModel(schema, RunConfig(), {"options": {}})
    with pytest.raises(RuntimeError, match="not been fitted"):
        model.predict_ids(np.zeros((1, 1), dtype=np.int64))


def test_streaming_is_refused(planted_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.streaming=true is not supported"):
        train_model(gbdt_config(planted_dataset, "train.streaming=true"), tmp_path / "m")


def test_evaluate_and_predict_commands(trained_gbdt, planted_dataset, tmp_path, capsys):
    _, _, out = trained_gbdt
    results = evaluate_models(planted_dataset, {"gbdt": out})
    assert results["gbdt"]["mae"] < results[TRAIN_MEDIAN]["mae"]
    source = tmp_path / "rows.parquet"
    read_split(planted_dataset, "test", 50).to_parquet(source)
    target = tmp_path / "pred.parquet"
    assert cli_main(["predict", "--model", str(out), "--input", str(source),
                     "--output", str(target)]) == 0
    import pandas as pd
    scored = pd.read_parquet(target)
    model, _ = load_checkpoint(out)
    schema = FeatureSchema.from_dict(read_manifest(planted_dataset)["features"])
    ids, _ = schema.arrays(scored)
    np.testing.assert_allclose(scored["prediction"].to_numpy(), model.predict_ids(ids))


def test_logged_as_a_pyfunc_without_pickles(trained_gbdt, planted_dataset, tmp_path):
    """The registry's packaging: the text model and JSON only; MLflow loads it back through
    grmodel's loader and scores as the checkpoint does (a sqlite store, no server)."""
    import mlflow

    from grmodel import registry

    _, _, out = trained_gbdt
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("gbdt", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = registry.log_model(out, planted_dataset)
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl")))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {"data/checkpoint/model.txt", "data/checkpoint/checkpoint.json",
            "data/checkpoint/feature_encoders.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle", ".pt"))]
    assert "lightgbm==4.7.0" in (local / "requirements.txt").read_text().split()
    test = read_split(planted_dataset, "test")
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    features = test[pyfunc.metadata.get_input_schema().input_names()]
    np.testing.assert_allclose(pyfunc.predict(features), predict_frame(load_checkpoint(out)[0], test))
    model, meta = load_checkpoint(registry.resolve_model_uri(local))
    assert meta["model_name"] == "gbdt" and isinstance(model, GBDTModel)


def test_staged_predictions_are_the_predictions_after_each_round(trained_gbdt, planted_dataset):
    _, _, out = trained_gbdt
    model, _ = load_checkpoint(out)
    schema = FeatureSchema.from_dict(read_manifest(planted_dataset)["features"])
    ids, _ = schema.arrays(read_split(planted_dataset, "valid", 300))
    steps = [1, 5, model.kept_steps]
    for staged, step in zip(model.staged_predictions(ids, steps), steps):
        np.testing.assert_allclose(staged, model.predict_ids(ids, step), rtol=1e-9, atol=1e-9)


def test_grmodel_train_applies_the_models_named_defaults(planted_dataset, tmp_path):
    """`grmodel train --model gbdt` fits at the GBDT's shrinkage (config.MODEL_DEFAULTS), not a
    network's step size; an override still wins."""
    out = tmp_path / "m"
    assert cli_main(["train", "--model", "gbdt", "--data", str(planted_dataset), "--out", str(out),
                     *QUICK]) == 0
    assert json.loads((out / META_FILE).read_text())["config"]["train"]["lr"] == 0.05
    out2 = tmp_path / "m2"
    assert cli_main(["train", "--model", "gbdt", "--data", str(planted_dataset), "--out", str(out2),
                     *QUICK, "train.lr=0.2"]) == 0
    assert json.loads((out2 / META_FILE).read_text())["config"]["train"]["lr"] == 0.2
