"""The bad-input corpus, third part: every path a command writes or deletes, the trust in what
decides a reuse, arguments checked before any work, and faults of the environment.

Each case is what a careful but unlucky user types, run through the command line in a folder
of its own beside links to shared tiny data. Each must end with its exit status (1 bad input, 2
a bad argument, 3 the environment) and one line naming the rule, never a traceback, and leave
every file as it was: nothing deleted, replaced or created (a refused command creates no
output, no folder, no tracking store). The case names read ``rule/case``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from grmodel.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.emb_dim=8", "model.encoder_hidden=16", "model.d_model=8", "model.n_heads=2",
        "model.ffn_dim=16", "model.n_layers=1", "train.progress=false", "train.num_threads=1",
        "train.epochs=1", "train.batch_size=256"]
GBDT = ["train.progress=false", "train.num_threads=1", "head.gbdt_rounds=30",
        "train.on_collapse=warn"]
SHARED = ("raw", "p", "q", "m", "g", "logs", "const", "huge", "store.db")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """raw (synth tiny) and p (its dataset); q (another synth's dataset: other encoders); m (a
    1-epoch VR on p); g (a 30-round GBDT on p); logs (4 days of logs by day, 2020-09-06 ..
    09-09); const (a table whose label is constant); huge (labels near 1e20, within float32 but
    beyond a squared error's range); store.db (an MLflow tracking store)."""
    root = tmp_path_factory.mktemp("policy")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for raw, seed, out in (("raw", "5", "p"), ("raw6", "6", "q")):
            assert main(["data", "synth", raw, "--preset", "tiny", "--seed", seed]) == 0
            assert main(["data", "ingest", raw, out]) == 0
        assert main(["train", "--data", "p", "--out", "m", "--model", "vr", *TINY,
                     "train.on_collapse=warn"]) == 0
        assert main(["train", "--data", "p", "--out", "g", "--model", "gbdt", *GBDT]) == 0
        assert main(["data", "days", "logs", "--preset", "tiny", "--days", "4", "--seed", "3"]) == 0
        rng = np.random.default_rng(0)
        for name, label in (("const", np.full(1500, 5.0)),
                            ("huge", rng.exponential(1.0, 1500) * 1e20)):
            pd.DataFrame({"u": rng.integers(0, 20, 1500), "i": rng.integers(0, 10, 1500),
                          "y": label}).to_csv(f"{name}.csv", index=False)
            _write_spec(Path(f"{name}.yaml"), source=f"{name}.csv")
            assert main(["data", "tabular", f"{name}.yaml", name]) == 0
        # lazy: MLflow is only needed for the tracking-store cases
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{root / 'store.db'}")
        mlflow.create_experiment("grmodel")
        mlflow.set_tracking_uri("")
    finally:
        os.chdir(cwd)
    return root


def _write_spec(path: Path, **changes: object) -> None:
    spec = {"name": "toy", "source": "t.csv", "label": "y", "user": {"categorical": ["u"]},
            "item": {"categorical": ["i"]}, **changes}
    path.write_text(yaml.safe_dump(spec))


# ------------------------------------------------------------------------------ setups

Setup = Callable[[Path], object]


def _none(here: Path) -> None:
    pass


def folder(name: str, **files: str) -> Setup:
    """A user's folder ``name`` holding ``files`` (name -> text)."""
    def setup(here: Path) -> None:
        (here / name).mkdir()
        for file, text in files.items():
            (here / name / file.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
            (here / name / file.replace("__", "/")).write_text(text)
    return setup


def copy_of(source: str, name: str, **extra: str) -> Setup:
    """A copy of the shared ``source`` (a grmodel output, its marker included) as ``name``,
    with the user's ``extra`` files added."""
    def setup(here: Path) -> None:
        shutil.copytree(here / source, here / name, symlinks=True)
        for file, text in extra.items():
            (here / name / file.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
            (here / name / file.replace("__", "/")).write_text(text)
    return setup


def file(name: str, data: str | bytes) -> Setup:
    def setup(here: Path) -> None:
        (here / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return setup


def linked(name: str, target: str) -> Setup:
    def setup(here: Path) -> None:
        (here / name).symlink_to(target)
    return setup


def table(**columns: object) -> Setup:
    """``t.csv`` of 200 rows: u, i, y and the given columns (value or function of the row)."""
    def setup(here: Path) -> None:
        n = 200
        frame = pd.DataFrame({"u": np.arange(n) % 7, "i": np.arange(n) % 5,
                              "y": np.linspace(0, 10, n)})
        for name, value in columns.items():
            frame[name] = value(n) if callable(value) else value
        frame.to_csv(here / "t.csv", index=False)
    return setup


def spec(**changes: object) -> Setup:
    def setup(here: Path) -> None:
        table()(here)
        _write_spec(here / "spec.yaml", **changes)
    return setup


def both(*setups: Setup) -> Setup:
    def setup(here: Path) -> None:
        for step in setups:
            step(here)
    return setup


def edited_checkpoint(name: str, source: str = "m") -> Setup:
    """A copy of the model ``source`` whose checkpoint.json states another learning rate (its
    digests kept)."""
    def setup(here: Path) -> None:
        copy_of(source, name)(here)
        meta = json.loads((here / name / "checkpoint.json").read_text())
        meta["config"]["train"]["lr"] = 0.5
        (here / name / "checkpoint.json").write_text(json.dumps(meta))
    return setup


def without_raw_values(source: str, name: str) -> Setup:
    """A copy of the shared dataset ``source`` whose test split lacks the raw-value columns."""
    def setup(here: Path) -> None:
        import pyarrow.parquet as pq

        from grmodel.features import RAW_PREFIX

        copy_of(source, name)(here)
        test = pq.read_table(here / name / "test.parquet")
        pq.write_table(test.drop([c for c in test.column_names if c.startswith(RAW_PREFIX)]),
                       here / name / "test.parquet")
    return setup


def replaced_gbdt_text(name: str) -> Setup:
    """A copy of g whose model.txt is another tree's (its recorded digest kept)."""
    def setup(here: Path) -> None:
        copy_of("g", name)(here)
        text = (here / name / "model.txt").read_text()
        (here / name / "model.txt").write_text(text.replace("num_leaves=", "num_leaves=9", 1))
    return setup


def logs_without(name: str, day: str) -> Setup:
    """A copy of the shared logs as ``name`` without the partition of ``day``."""
    def setup(here: Path) -> None:
        copy_of("logs", name)(here)
        shutil.rmtree(here / name / f"date={day}")
    return setup


def claimed(name: str, **files: str) -> Setup:
    """A directory grmodel claimed (its marker lists no file) holding the user's ``files``."""
    def setup(here: Path) -> None:
        from grmodel.outputs import write_marker

        folder(name, **files)(here)
        write_marker(here / name, files=[])
    return setup


def locked_store(here: Path) -> Callable[[], None]:
    """Another process's write transaction on the tracking store, held while the command runs."""
    shutil.copyfile(here / "store.db", here / "busy.db")
    connection = sqlite3.connect(here / "busy.db", isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    return connection.close


def alias_bomb(levels: int = 9) -> str:
    """A YAML flow list whose last item expands to 10**levels strings through aliases."""
    items = ["&a [x, x, x, x, x, x, x, x, x, x]"]
    names = "abcdefghij"
    for a, b in zip(names[:levels - 1], names[1:levels]):
        items.append(f"&{b} [" + ", ".join([f"*{a}"] * 10) + "]")
    return "[" + ", ".join(items) + "]"


def alias_spec(here: Path) -> None:
    table()(here)
    text = yaml.safe_dump({"source": "t.csv", "label": "y", "user": {"categorical": ["u"]},
                           "item": {"categorical": ["i"]}})
    (here / "spec.yaml").write_text(f"name: {alias_bomb()}\n{text}")


# ------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    argv: list[str]
    status: int
    says: str  # a fragment of the one line the command prints: names the file and the rule
    setup: Setup = _none
    env: dict[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # paths that must not exist afterwards (nothing created)


def train(out: str, *options: str, extra: tuple[str, ...] = ()) -> list[str]:
    """``grmodel train`` of a tiny VR on p into ``out``: options, then the overrides."""
    return ["train", "--data", "p", "--out", out, "--model", "vr", *options, *TINY, *extra]


PREDICT = ["predict", "--model", "m", "--input", "p/test.parquet", "--output"]
NOT_OURS = "grmodel did not write"
NO_MARKER = "no grmodel marker"
STORE_MISSING = "no such tracking store"
NODIR = "sqlite:///nodir/sub/x.db"

CASES: dict[str, Case] = {
    # A directory is grmodel's only by its own mark, never by a familiar file name.
    "marker-owns/ingest_overwrite_user_folder_with_manifest": Case(
        ["data", "ingest", "raw", "webapp", "--overwrite"], 1, NO_MARKER,
        folder("webapp", **{"manifest.json": "{}", "index.html": "hi"})),
    "marker-owns/refusal_does_not_invite_overwrite": Case(
        ["data", "ingest", "raw", "webapp"], 1, "--overwrite does not apply",
        folder("webapp", **{"manifest.json": "{}", "index.html": "hi"})),
    "marker-owns/tabular_overwrite_user_folder_with_report": Case(
        ["data", "tabular", "spec.yaml", "site", "--overwrite"], 1, NO_MARKER,
        both(spec(), folder("site", **{"report.json": "{}", "index.html": "hi"}))),
    "marker-owns/train_overwrite_user_folder_with_stage_record": Case(
        train("work", "--overwrite"), 1, NO_MARKER,
        folder("work", **{"stage.json": "{}", "notes.md": "mine"})),
    "marker-owns/train_overwrite_user_folder_with_checkpoint_record": Case(
        train("work", "--overwrite"), 1, NO_MARKER,
        folder("work", **{"checkpoint.json": "{}", "notes.md": "mine"})),
    "marker-owns/validate_user_folder_with_validation_record": Case(
        ["validate", "raw", "--input", "raw", "--out", "docs", "--overwrite"], 1, NO_MARKER,
        folder("docs", **{"validation.json": "{}", "notes.md": "mine"})),
    "marker-owns/pipeline_workdir_with_mlflow_db": Case(
        ["pipeline", "run", "--local", "--workdir", "lab", "--overwrite"], 1, NO_MARKER,
        folder("lab", **{"mlflow.db": "x", "notes.md": "mine"})),
    "marker-owns/main_workdir_with_run_record": Case(
        ["main", "--workdir", "lab", "--overwrite"], 1, NO_MARKER,
        folder("lab", **{"run_record.json": "{}", "notes.md": "mine"})),
    "marker-owns/synth_overwrite_folder_with_foreign_synth_json": Case(
        ["data", "synth", "gen", "--preset", "tiny", "--overwrite"], 1, NOT_OURS,
        folder("gen", **{"synth.json": "{}", "notes.md": "mine"})),
    "marker-owns/experiment_folder_with_report_record": Case(
        ["experiment", "table1", "--data", "p", "--out", "exp", "--overwrite"], 1, NO_MARKER,
        folder("exp", **{"report.json": "{}", "notes.md": "mine"})),
    # --overwrite never removes a file grmodel did not write, even inside its own output.
    "overwrite-only-ours/synth_data_with_a_users_file": Case(
        ["data", "synth", "gen", "--preset", "tiny", "--overwrite"], 1, "notes.md",
        copy_of("raw", "gen", **{"notes.md": "mine"})),
    "overwrite-only-ours/model_with_a_users_file": Case(
        train("m2", "--overwrite"), 1, f"{NOT_OURS}: notes.md",
        copy_of("m", "m2", **{"notes.md": "mine"})),
    "overwrite-only-ours/dataset_with_a_users_subfolder": Case(
        ["data", "ingest", "raw", "p2", "--overwrite"], 1, f"{NOT_OURS}: extra/keep.csv",
        copy_of("p", "p2", **{"extra__keep.csv": "1,2"})),
    "overwrite-only-ours/model_without_overwrite_names_the_users_file": Case(
        train("m2", extra=("train.lr=0.5",)), 1, "notes.md",
        copy_of("m", "m2", **{"notes.md": "mine"})),
    # A single output file is replaced only when it carries grmodel's mark.
    "file-mark/predict_overwrite_a_users_text": Case(
        [*PREDICT, "notes.txt", "--overwrite"], 1, NOT_OURS, file("notes.txt", "my notes")),
    "file-mark/predict_overwrite_a_users_parquet": Case(
        [*PREDICT, "mine.parquet", "--overwrite"], 1, NOT_OURS,
        lambda here: shutil.copyfile(here / "p" / "valid.parquet", here / "mine.parquet")),
    "file-mark/predict_through_a_link": Case(
        [*PREDICT, "out.parquet", "--overwrite"], 1, NOT_OURS,
        both(file("target.parquet", b"x"), linked("out.parquet", "target.parquet"))),
    "file-mark/evaluate_overwrite_a_users_json": Case(
        ["evaluate", "--data", "p", "--model", "vr=m", "--out", "notes.json", "--overwrite"], 1,
        NOT_OURS, file("notes.json", '{"mine": 1}')),
    "file-mark/compile_over_a_datasets_manifest": Case(
        ["pipeline", "compile", "--out", "p2/manifest.json"], 1, NOT_OURS, copy_of("p", "p2")),
    "file-mark/compile_overwrite_a_users_yaml": Case(
        ["pipeline", "compile", "--out", "ci.yaml", "--overwrite"], 1, NOT_OURS,
        file("ci.yaml", "steps: [build]\n")),
    "file-mark/compile_replaces_its_own_only_with_overwrite": Case(
        ["pipeline", "compile", "--out", "pipe.yaml"], 1, "replaced only with --overwrite",
        lambda here: shutil.copyfile(REPO / "pipelines" / "grmodel_pipeline.yaml",
                                     here / "pipe.yaml")),
    # A tracking store is read, never created where a mistyped URI points.
    "tracking-store/history_of_a_mistyped_sqlite_path": Case(
        ["registry", "history", "grmodel-gr", "--tracking-uri", NODIR], 1, STORE_MISSING,
        absent=("nodir",)),
    "tracking-store/promote_on_a_mistyped_sqlite_path": Case(
        ["registry", "promote", "grmodel-gr", "--version", "1", "--data", "p", "--tracking-uri",
         NODIR], 1, STORE_MISSING, absent=("nodir",)),
    "tracking-store/register_on_a_mistyped_sqlite_path": Case(
        ["registry", "register", "grmodel-gr", "--run-id", "0" * 32, "--tracking-uri", NODIR],
        1, STORE_MISSING, absent=("nodir",)),
    "tracking-store/reproduce_on_a_mistyped_sqlite_path": Case(
        ["reproduce", "0" * 32, "--tracking-uri", NODIR], 1, STORE_MISSING, absent=("nodir",)),
    "tracking-store/predict_registry_model_on_a_mistyped_store": Case(
        [*PREDICT[:2], "models:/grmodel-gr@champion", *PREDICT[3:], "out.parquet"], 1,
        STORE_MISSING, env={"MLFLOW_TRACKING_URI": NODIR}, absent=("nodir", "out.parquet")),
    "tracking-store/not_a_database": Case(
        ["registry", "history", "grmodel-gr", "--tracking-uri", "sqlite:///notes.db"], 3,
        "environment", file("notes.db", "these are notes")),
    "tracking-store/locked_by_another_process": Case(
        ["registry", "history", "grmodel-gr", "--tracking-uri", "sqlite:///busy.db"], 3,
        "locked by another process", locked_store),
    "tracking-store/pipeline_run_with_an_unreachable_server_stops_before_any_stage": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param",
         "mlflow_tracking_uri=http://alice:hunter2@127.0.0.1:9"], 3,
        "http://127.0.0.1:9: not reachable", absent=("w",)),
    "tracking-store/unknown_run_id_is_bad_input": Case(
        ["registry", "register", "grmodel-gr", "--run-id", "0" * 32, "--tracking-uri",
         "sqlite:///store.db"], 1, "not found"),
    # A validation that fails before its reports leaves no --out behind.
    "validate-out/bad_bound_creates_nothing": Case(
        ["validate", "raw", "--input", "raw", "--out", "v", "--set", "big_rows=[1]"], 1,
        "expected [low, high]", absent=("v",)),
    "validate-out/missing_input_creates_nothing": Case(
        ["validate", "processed", "--input", "nowhere", "--out", "v"], 1, "nowhere",
        absent=("v",)),
    "validate-out/missing_vocab_creates_nothing": Case(
        ["validate", "tokens", "--input", "p", "--out", "v", "--vocab", "nope.json"], 1,
        "nope.json", absent=("v",)),
    # Arguments are checked before any work.
    "args-range/predict_batch_size_negative": Case(
        [*PREDICT, "out.parquet", "--batch-size", "-1"], 2, "the batch size is a whole number",
        absent=("out.parquet",)),
    "args-range/predict_batch_size_zero": Case(
        [*PREDICT, "out.parquet", "--batch-size", "0"], 2, "the batch size is a whole number",
        absent=("out.parquet",)),
    "args-range/predict_batch_size_text": Case(
        [*PREDICT, "out.parquet", "--batch-size", "many"], 2, "the batch size is a whole number"),
    "args-range/synth_seed_negative": Case(
        ["data", "synth", "gen", "--preset", "tiny", "--seed", "-1"], 2, "a seed is a whole number",
        absent=("gen",)),
    "args-range/ingest_seed_too_large": Case(
        ["data", "ingest", "raw", "o", "--seed", str(2**32)], 2, "a seed is a whole number",
        absent=("o",)),
    "args-range/tokens_max_len_zero": Case(
        ["validate", "tokens", "--input", "p", "--out", "v", "--max-len", "0"], 2,
        "the decode length is a whole number", absent=("v",)),
    "args-range/experiment_seeds_zero": Case(
        ["experiment", "table1", "--data", "p", "--out", "exp", "--seeds", "0"], 2,
        "--seeds is a whole number", absent=("exp",)),
    "args-range/floors_draws_zero": Case(
        ["experiment", "floors", "--data", "p", "--draws", "0"], 2, "--draws is a whole number"),
    "args-range/schedule_max_concurrency_zero": Case(
        ["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--cron", "0 * * * *",
         "--max-concurrency", "0"], 2, "--max-concurrency is a whole number"),
    "args-range/main_seed_negative": Case(
        ["main", "--workdir", "w", "--seed", "-5"], 2, "a seed is a whole number", absent=("w",)),
    "args-range/validate_bound_pair_reversed": Case(
        ["validate", "raw", "--input", "raw", "--out", "v", "--set", "big_rows=[1000000,10]"], 1,
        "low <= high", absent=("v",)),
    "args-range/validate_bound_nan": Case(
        ["validate", "raw", "--input", "raw", "--out", "v", "--set", "watch_ratio_rtol=NaN"], 1,
        "expected a finite float", absent=("v",)),
    "args-range/validate_bound_negative": Case(
        ["validate", "processed", "--input", "p", "--out", "v", "--set",
         "label_tail_factor=-1"], 1, "expected a finite float", absent=("v",)),
    "args-range/validate_bound_wrong_type": Case(
        ["validate", "raw", "--input", "raw", "--out", "v", "--set", "big_rows=\"many\""], 1,
        "expected [low, high]", absent=("v",)),
    "args-range/validate_bound_list_of_wrong_items": Case(
        ["validate", "raw", "--input", "raw", "--out", "v", "--set",
         "user_active_degrees=[1,2]"], 1, "expected a JSON list of str", absent=("v",)),
    "args-range/config_threshold_nan": Case(
        train("o", extra=("train.collapse_std_ratio=NaN",)), 1,
        "train.collapse_std_ratio must be", absent=("o",)),
    "args-range/config_quantile_above_one": Case(
        train("o", extra=("vocab.q_start=2",)), 1, "vocab.q_start must be", absent=("o",)),
    "args-range/config_seed_negative": Case(
        train("o", extra=("train.seed=-1",)), 1, "train.seed must be", absent=("o",)),
    "args-range/pipeline_seeds_zero": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "seeds=0"], 1,
        "expected a whole number >= 1", absent=("w",)),
    "args-range/pipeline_threshold_nan": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "max_xauc_drop=NaN"], 1,
        "expected a finite number", absent=("w",)),
    "args-range/pipeline_baselines_not_strings": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "baselines=[1]"], 1,
        "expected a JSON list of strings", absent=("w",)),
    "args-range/pipeline_replicas_fractional": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "train_replicas=2.5"], 1,
        "expected a whole number", absent=("w",)),
    "args-range/submit_threshold_infinite": Case(
        ["pipeline", "submit", "--host", "http://127.0.0.1:9", "--param",
         "min_mae_rel_improvement=Infinity"], 1, "expected a finite number"),
    # --data alone names the dataset a model trains on.
    "data-is-the-given-one/positional_processed_dir": Case(
        train("o", extra=("data.processed_dir=q",)), 1, "conflicts with --data",
        absent=("o", "q/o")),
    "data-is-the-given-one/processed_dir_in_the_environment": Case(
        train("o"), 1, "conflicts with --data",
        env={"GRMODEL_OVERRIDES": "train.epochs=1 data.processed_dir=q"}, absent=("o",)),
    # Configs and specs are bounded before they are parsed.
    "yaml-bounded/alias_bomb_in_a_specs_name": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "through aliases", alias_spec, absent=("o",)),
    "yaml-bounded/alias_bomb_in_a_config": Case(
        train("o", "--config", "c.yaml"), 1, "through aliases",
        file("c.yaml", f"train:\n  lr: {alias_bomb()}\n"), absent=("o",)),
    "yaml-bounded/recursive_alias": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "refers to itself",
        file("spec.yaml", "name: &n [*n]\n"), absent=("o",)),
    "yaml-bounded/config_of_two_megabytes": Case(
        train("o", "--config", "c.yaml"), 1, "at most 1,048,576 bytes",
        file("c.yaml", "# padding\n" * 210_000), absent=("o",)),
    "yaml-bounded/spec_of_two_megabytes": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "at most 1,048,576 bytes",
        file("spec.yaml", "# padding\n" * 210_000), absent=("o",)),
    "yaml-bounded/json_config_nested_too_deep": Case(
        train("o", "--config", "c.json"), 1, "nested too deeply",
        file("c.json", "[" * 100_000 + "]" * 100_000), absent=("o",)),
    "yaml-bounded/config_json_nested_too_deep": Case(
        ["train", "--data", "p", "--out", "o", "--config-json", "[" * 50_000 + "]" * 50_000], 1,
        "nested too deeply", absent=("o",)),
    "yaml-bounded/yaml_error_never_echoes_the_file": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "at line 1",
        file("spec.yaml", "password: hunter2: [x\n"), absent=("o",)),
    # Dataset specs: what a model may learn from, and what rows it sees.
    "spec-rules/label_is_a_user_feature": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "the label 'y' is also a feature",
        spec(user={"categorical": ["u", "y"]}), absent=("o",)),
    "spec-rules/label_is_a_numeric_item_feature": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "is also a feature",
        spec(item={"categorical": ["i"], "numeric": {"y": 4}}), absent=("o",)),
    "spec-rules/negative_duration": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "a duration is finite and >= 0",
        both(spec(duration="d"), table(d=lambda n: np.linspace(-5, 5, n))), absent=("o",)),
    "spec-rules/infinite_duration": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "a duration is finite and >= 0",
        both(spec(duration="d"), table(d=lambda n: np.r_[np.inf, np.ones(n - 1)])),
        absent=("o",)),
    "spec-rules/missing_duration": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "a duration is finite and >= 0",
        both(spec(duration="d"), table(d=lambda n: np.r_[np.nan, np.ones(n - 1)])),
        absent=("o",)),
    "spec-rules/label_beyond_float32": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "(float32)",
        both(spec(), table(y=lambda n: np.r_[1e39, np.ones(n - 1)])), absent=("o",)),
    "spec-rules/name_is_not_text": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "'name' is a list", spec(name=["a", "b"]),
        absent=("o",)),
    "spec-rules/field_list_is_text": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "the spec's field lists",
        spec(user={"categorical": "u"}), absent=("o",)),
    "spec-rules/source_links_to_a_system_file": Case(
        ["data", "tabular", "spec.yaml", "o"], 1, "is it the intended file?",
        both(spec(source="sys.csv"), linked("sys.csv", "/etc/passwd")), absent=("o",)),
    # What decides a reuse, or a score, is checked: digests and encoders.
    "model-trust/evaluate_on_a_dataset_with_other_encoders_and_no_raw_values": Case(
        # With the test split's raw values the model is scored through its own encoders;
        # without them (a dataset of an older version) its ids would mean other values.
        ["evaluate", "--data", "q2", "--model", "vr=m", "--out", "e.json"], 1,
        "encoders differ", without_raw_values("q", "q2"), absent=("e.json",)),
    "model-trust/train_does_not_reuse_an_edited_checkpoint_json": Case(
        # m's own config but for the edited value: before, "reused, not trained again"
        train("m2", extra=("train.on_collapse=warn", "train.lr=0.5")), 1,
        "already holds a grmodel output", edited_checkpoint("m2")),
    "model-trust/predict_refuses_an_edited_checkpoint_json": Case(
        ["predict", "--model", "m2", "--input", "p/test.parquet", "--output", "o.parquet"], 1,
        "differs from the metadata model.pt carries", edited_checkpoint("m2"),
        absent=("o.parquet",)),
    "model-trust/evaluate_refuses_an_edited_checkpoint_json": Case(
        ["evaluate", "--data", "p", "--model", "vr=m2"], 1,
        "differs from the metadata model.pt carries", edited_checkpoint("m2")),
    # A model of a constant label is a collapse; a loss beyond float range is not a bug.
    "collapse/gr_on_a_constant_label": Case(
        ["train", "--data", "const", "--out", "o", *TINY], 1, "validation labels are constant",
        absent=("o", "o.state")),
    "collapse/vr_on_a_constant_label": Case(
        ["train", "--data", "const", "--out", "o", "--model", "vr", *TINY], 1,
        "validation labels are constant", absent=("o", "o.state")),
    "diverged/squared_error_beyond_float32": Case(
        ["train", "--data", "huge", "--out", "o", "--model", "vr", *TINY], 1,
        "the training loss stays finite", absent=("o",)),
    # A training state directory is grmodel's own.
    "state-dir/a_dataset_as_state_dir": Case(
        train("o", "--state-dir", "q"), 1, "state directory q", absent=("o",)),
    "state-dir/a_users_folder_as_state_dir": Case(
        train("o", "--state-dir", "mine"), 1, "state directory mine: holds files",
        folder("mine", **{"notes.md": "mine"}), absent=("o",)),
    # Logs by day (data days): a partition folder is grmodel's only by its generator record.
    "marker-owns/days_overwrite_a_users_log_folder": Case(
        ["data", "days", "logs2", "--preset", "tiny", "--days", "2", "--overwrite"], 1, NOT_OURS,
        folder("logs2", **{"date=2020-09-06__interactions.csv": "user_id,video_id\n1,2\n"})),
    "overwrite-only-ours/days_without_overwrite": Case(
        ["data", "days", "logs2", "--preset", "tiny", "--days", "2"], 1,
        "replaced only with --overwrite", copy_of("logs", "logs2")),
    "overwrite-only-ours/days_with_a_users_file_in_a_partition": Case(
        ["data", "days", "logs2", "--preset", "tiny", "--days", "2", "--overwrite"], 1,
        f"{NOT_OURS}: date=2020-09-07/notes.md",
        copy_of("logs", "logs2", **{"date=2020-09-07__notes.md": "mine"})),
    "overwrite-only-ours/days_with_a_users_file_beside_the_partitions": Case(
        ["data", "days", "logs2", "--preset", "tiny", "--days", "2", "--overwrite"], 1, NOT_OURS,
        copy_of("logs", "logs2", **{"notes.md": "mine"})),
    "args-range/days_zero": Case(
        ["data", "days", "d", "--days", "0"], 2, "--days is a whole number", absent=("d",)),
    "args-range/days_seed_negative": Case(
        ["data", "days", "d", "--seed", "-1"], 2, "a seed is a whole number", absent=("d",)),
    "args-range/days_drift_after_the_last_day": Case(
        ["data", "days", "d", "--days", "3", "--drift", "label_shift@5"], 1,
        "label_shift_day is a day index", absent=("d",)),
    "args-range/days_drift_of_an_unknown_kind": Case(
        ["data", "days", "d", "--drift", "heatwave@1"], 1, "KIND one of", absent=("d",)),
    "args-range/days_label_shift_nan": Case(
        ["data", "days", "d", "--set", "label_shift=NaN"], 1, "label_shift > 0 and finite",
        absent=("d",)),
    "args-range/days_start_share_above_one": Case(
        ["data", "days", "d", "--set", "start_share=1.5"], 1, "0 < start_share <= 1",
        absent=("d",)),
    "args-range/days_first_day_not_a_day": Case(
        ["data", "days", "d", "--first-day", "2020-02-30"], 1, "YYYY-MM-DD", absent=("d",)),
    # The day-by-day simulation: every argument checked before its directory is claimed.
    "args-range/experiment_days_rows_per_day_negative": Case(
        ["experiment", "days", "--out", "sim", "--rows-per-day", "-5"], 2,
        "--rows-per-day is a whole number", absent=("sim",)),
    "args-range/experiment_days_drift_on_day_zero": Case(
        ["experiment", "days", "--out", "sim", "--days", "3", "--drift", "label_shift@0"], 1,
        "DAY a simulated day, 1 .. 3", absent=("sim",)),
    "args-range/experiment_days_window_of_one_day": Case(
        ["experiment", "days", "--out", "sim", "--window-days", "1"], 2,
        "--window-days is a whole number >= 2", absent=("sim",)),
    "args-range/experiment_days_zero_days": Case(
        ["experiment", "days", "--out", "sim", "--days", "0"], 2, "--days is a whole number",
        absent=("sim",)),
    "args-range/experiment_days_data_seed_negative": Case(
        ["experiment", "days", "--out", "sim", "--data-seed", "-1"], 2, "a seed is a whole number",
        absent=("sim",)),
    "args-range/experiment_days_drift_after_the_last_day": Case(
        ["experiment", "days", "--out", "sim", "--days", "3", "--drift", "feature_mix@4"], 1,
        "DAY a simulated day, 1 .. 3", absent=("sim",)),
    "args-range/experiment_days_param_unknown": Case(
        ["experiment", "days", "--out", "sim", "--param", "no_such_param=1"], 1,
        "no_such_param", absent=("sim",)),
    "args-range/experiment_days_override_out_of_range": Case(
        ["experiment", "days", "--out", "sim", "gr:model.decode_level=2"], 1,
        "model.decode_level must be in", absent=("sim",)),
    "overwrite-only-ours/experiment_days_over_a_users_table": Case(
        ["experiment", "days", "--out", "sim", "--days", "3", "--overwrite"], 1,
        "holds days.md, which grmodel did not write", claimed("sim", **{"days.md": "mine"})),
    # Logs by day as a run's source: a window reads every one of its days, checked first.
    "logs-window/ingest_a_window_with_a_missing_day": Case(
        ["data", "ingest", "gap", "o", "--split", "forward", "--as-of", "2020-09-09",
         "--window-days", "3"], 1, "no partition for 2020-09-08",
        logs_without("gap", "2020-09-08"), absent=("o",)),
    "logs-window/pipeline_run_on_logs_with_a_missing_day": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "data_source=logs",
         "--param", "data_repo=gap", "--param", "window_days=3", "--param", "as_of=2020-09-09"],
        1, "no partition for 2020-09-08", logs_without("gap", "2020-09-08"), absent=("w",)),
    "logs-window/pipeline_run_on_a_missing_log_folder": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "data_source=logs",
         "--param", "data_repo=nowhere", "--param", "window_days=3", "--param",
         "as_of=2020-09-09"], 1, "not a directory of day partitions", absent=("w",)),
    "logs-window/pipeline_run_on_logs_without_a_window": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "data_source=logs",
         "--param", "data_repo=logs"], 1, "reads a window", absent=("w",)),
    "logs-window/pipeline_run_with_a_window_of_one_day": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "window_days=1"], 1,
        "window_days", absent=("w",)),
    "logs-window/pipeline_run_as_of_not_a_day": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param", "window_days=3", "--param",
         "as_of=2020-13-01"], 1, "YYYY-MM-DD", absent=("w",)),
    "args-range/pipeline_override_out_of_range": Case(
        ["pipeline", "run", "--local", "--workdir", "w", "--param",
         'overrides=["train.lr=NaN"]'], 1, "train.lr must be", absent=("w",)),
    # The registry: versions are whole numbers, a rollback says why, thresholds are in range.
    "args-range/rollback_to_version_zero": Case(
        ["registry", "rollback", "grmodel-gr", "--to", "0", "--reason", "x", "--tracking-uri",
         "sqlite:///store.db"], 2, "--to (a model version) is a whole number >= 1"),
    "args-range/rollback_to_a_version_named_in_words": Case(
        ["registry", "rollback", "grmodel-gr", "--to", "latest", "--reason", "x",
         "--tracking-uri", "sqlite:///store.db"], 2, "is a whole number >= 1"),
    "args-range/rollback_with_a_blank_reason": Case(
        ["registry", "rollback", "grmodel-gr", "--to", "1", "--reason", "  ", "--tracking-uri",
         "sqlite:///store.db"], 1, "a rollback says why"),
    "tracking-store/rollback_on_a_mistyped_sqlite_path": Case(
        ["registry", "rollback", "grmodel-gr", "--to", "1", "--reason", "x", "--tracking-uri",
         NODIR], 1, STORE_MISSING, absent=("nodir",)),
    "registry-identity/rollback_of_an_unknown_model": Case(
        ["registry", "rollback", "grmodel-gr", "--to", "1", "--reason", "x", "--tracking-uri",
         "sqlite:///store.db"], 1, "not found"),
    "args-range/promote_version_zero": Case(
        ["registry", "promote", "grmodel-gr", "--version", "0", "--data", "p", "--tracking-uri",
         "sqlite:///store.db"], 2, "--version (a model version) is a whole number >= 1"),
    "args-range/promote_threshold_nan": Case(
        ["registry", "promote", "grmodel-gr", "--version", "1", "--data", "p",
         "--max-xauc-drop", "NaN", "--tracking-uri", "sqlite:///store.db"], 1,
        "promotion thresholds are finite numbers in range"),
    # The GBDT's checkpoint: what decides its reuse is covered by a digest too.
    "model-trust/train_does_not_reuse_an_edited_gbdt_checkpoint_json": Case(
        ["train", "--data", "p", "--out", "g2", "--model", "gbdt", *GBDT, "train.lr=0.5"], 1,
        "already holds a grmodel output", edited_checkpoint("g2", "g")),
    "model-trust/predict_refuses_an_edited_gbdt_checkpoint_json": Case(
        ["predict", "--model", "g2", "--input", "p/test.parquet", "--output", "o.parquet"], 1,
        "the sha256 of its metadata differs", edited_checkpoint("g2", "g"),
        absent=("o.parquet",)),
    "model-trust/predict_refuses_a_replaced_gbdt_model_text": Case(
        ["predict", "--model", "g2", "--input", "p/test.parquet", "--output", "o.parquet"], 1,
        "model.txt: sha256 differs", replaced_gbdt_text("g2"), absent=("o.parquet",)),
    "model-trust/evaluate_refuses_an_edited_gbdt_checkpoint_json": Case(
        ["evaluate", "--data", "p", "--model", "gbdt=g2"], 1,
        "the sha256 of its metadata differs", edited_checkpoint("g2", "g")),
}


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) and a digest of its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def shared_before(world) -> dict[str, dict[str, str]]:
    return {name: _files(world / name) if (world / name).is_dir() else
            {name: hashlib.sha256((world / name).read_bytes()).hexdigest()} for name in SHARED}


def test_the_corpus_covers_every_command_and_has_its_size():
    commands = {" ".join(c.argv[:2]) if c.argv[0] in ("data", "pipeline", "registry",
                                                        "validate", "experiment")
                else c.argv[0] for c in CASES.values()}
    assert len(CASES) >= 115
    assert {"data ingest", "data tabular", "data synth", "data days", "train", "predict",
            "evaluate", "experiment days", "registry rollback", "registry promote",
            "validate raw", "validate processed", "validate tokens", "pipeline compile",
            "pipeline run", "registry history", "reproduce", "main",
            "experiment table1"} <= commands


@pytest.mark.parametrize("name", list(CASES))
def test_refused_with_its_rule_and_nothing_touched(name, world, shared_before, tmp_path,
                                                   monkeypatch, capsys):
    case = CASES[name]
    for shared in SHARED:
        (tmp_path / shared).symlink_to(world / shared)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("GRMODEL_OVERRIDES", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    close = case.setup(tmp_path)
    before = _files(tmp_path)
    capsys.readouterr()
    try:
        status = main(case.argv)
    finally:
        if callable(close):
            close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines()
             if line.strip() and " WARNING " not in line and not line.startswith(("usage:", " "))]
    assert status == case.status, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "error:" in lines[0] and "rule:" in lines[0] and case.says in lines[0], lines[0]
    assert "root:x:0:0" not in err and "hunter2" not in err  # never a file's content
    assert _files(tmp_path) == before  # nothing deleted, replaced or created
    for path in case.absent:
        assert not (tmp_path / path).exists(), path
    for shared, files in shared_before.items():
        target = world / shared
        assert (_files(target) if target.is_dir() else
                {shared: hashlib.sha256(target.read_bytes()).hexdigest()}) == files, shared


# ------------------------------------------------- what the rules still allow, and record


def test_a_failed_validate_leaves_nothing_and_the_corrected_rerun_runs(world, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").symlink_to(world / "raw")
    bounds = ["--set", "big_rows=[20,100000]", "--set", "small_rows=[20,100000]"]
    assert main(["validate", "raw", "--input", "raw", "--out", "v", "--set", "big_rows=[1]"]) == 1
    assert not (tmp_path / "v").exists()
    assert main(["validate", "raw", "--input", "raw", "--out", "v", *bounds]) == 0
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        ".grmodel-output.json", "validation.html", "validation.json", "validation.md"]
    assert main(["validate", "raw", "--input", "raw", "--out", "v", *bounds, "--overwrite"]) == 0


def test_own_outputs_are_replaced_with_overwrite_files_and_later_records_included(
        world, tmp_path, monkeypatch, capsys):
    """A prediction, a metrics file, a compiled pipeline and a model with a record grmodel
    added after publishing it (training.json) are grmodel's to replace with --overwrite."""
    from grmodel.atomic import write_text_atomic

    monkeypatch.chdir(tmp_path)
    for name in ("p", "m"):
        (tmp_path / name).symlink_to(world / name)
    commands = [[*PREDICT, "out.parquet"],
                ["evaluate", "--data", "p", "--model", "vr=m", "--out", "e.json"],
                ["pipeline", "compile", "--out", "pipe.yaml"]]
    for argv in commands:
        assert main(argv) == 0
        assert main([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "e.json").read_text())["grmodel_output"]["command"] == "evaluate"
    shutil.copytree(world / "m", tmp_path / "m2")
    write_text_atomic(tmp_path / "m2" / "training.json", "{}")  # recorded in the marker
    assert "training.json" in json.loads((tmp_path / "m2" / ".grmodel-output.json").read_text())[
        "files"]
    assert main(train("m2", "--overwrite", extra=("train.on_collapse=warn",))) == 0
    assert not (tmp_path / "m2" / "training.json").exists()


def test_rows_without_a_timestamp_are_counted_in_the_output_and_the_manifest(tmp_path,
                                                                            monkeypatch, capsys):
    """Before: 600 of 3,000 rows without a timestamp left a chronological split silently."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    stamps = rng.uniform(0, 1e6, 3000)
    stamps[:600] = np.nan
    pd.DataFrame({"u": rng.integers(0, 20, 3000), "i": rng.integers(0, 10, 3000),
                  "y": rng.exponential(1, 3000), "ts": stamps}).to_csv("t.csv", index=False)
    _write_spec(tmp_path / "spec.yaml", timestamp="ts", split={"kind": "chronological"})
    assert main(["data", "tabular", "spec.yaml", "o"]) == 0
    assert json.loads(capsys.readouterr().out)["dropped_rows"] == 600
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["splits"]["dropped_rows"] == 600
    assert any("600 of 3,000 rows have no timestamp" in w for w in manifest["warnings"])


def test_help_prints_no_warning_before_it():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "grmodel.cli", "validate", "--help"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("usage: grmodel validate")
    assert "Warning" not in done.stderr, done.stderr


def test_an_edited_training_record_is_not_reused(world, tmp_path):
    """The pipeline and the experiments reuse a finished run by its training.json: the config
    there must also be the one inside model.pt, whose digest is verified."""
    from grmodel.config import RunConfig
    from grmodel.training.records import finished_run

    model = tmp_path / "m"
    shutil.copytree(world / "m", model)
    meta = json.loads((model / "checkpoint.json").read_text())
    config = RunConfig.from_dict(meta["config"])
    other = config.with_overrides(["train.lr=0.5"])
    fingerprint = meta["dataset_fingerprint"]
    record = {"config": other.to_dict(), "dataset_fingerprint": fingerprint}
    (model / "training.json").write_text(json.dumps(record))
    assert finished_run(model, other, fingerprint) is None  # model.pt says lr is not 0.5
    record["config"] = config.to_dict()
    (model / "training.json").write_text(json.dumps(record))
    assert finished_run(model, config, fingerprint) is not None
    assert finished_run(model, config, "another dataset") is None
