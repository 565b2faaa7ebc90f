"""One error path: every bad input is one line ``grmodel CMD: error: ... (rule: ...)`` with a
non-zero exit status and no traceback (``-v`` shows it); signals clean up.

The corpus below is the CLI-argument, spec, config and raw-file half of the bad-input corpus;
each case names the rule (a substring of the error line) that stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny_runs import TINY_RUN

from grmodel.cli import EXIT_ENVIRONMENT, EXIT_SIGINT, EXIT_SIGTERM, main


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """raw (synth tiny) and p (its processed dataset)."""
    root = tmp_path_factory.mktemp("cli")
    assert main(["data", "synth", str(root / "raw"), "--preset", "tiny", "--seed", "5"]) == 0
    assert main(["data", "ingest", str(root / "raw"), str(root / "p")]) == 0
    return root


def _raw_with(name: str, edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Setup: ``bad/`` = the raw files with ``name`` rewritten by ``edit``."""
    def setup(root: Path) -> None:
        shutil.copytree(root / "raw", root / "bad")
        (root / "bad" / name).write_bytes(edit((root / "bad" / name).read_bytes()))
    return setup


def _first_field(value: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[1] = value + lines[1][lines[1].index(b","):]
        return b"\n".join(lines)
    return edit


def _file(name: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (root / name).write_bytes(data)
    return setup


def _spec(**changes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        pd.DataFrame({"u": [1, 2, 3, 4] * 5, "i": list("abcde") * 4, "y": range(20)}).to_csv(
            root / "t.csv", index=False)
        spec = {"name": "toy", "source": "t.csv", "label": "y", "user": {"categorical": ["u"]},
                "item": {"categorical": ["i"]}, **changes}
        (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return setup


def _none(root: Path) -> None:
    pass


TRAIN = ["train", "--data", "p", "--out", "m", *TINY_RUN]
# id: (setup, argv, rule substring)
CASES: dict[str, tuple[Callable[[Path], None], list[str], str]] = {
    # CLI arguments and config values
    "epochs_zero": (_none, [*TRAIN, "train.epochs=0"], "train.epochs must be >= 1"),
    "batch_size_negative": (_none, [*TRAIN, "train.batch_size=-4"], "train.batch_size must be"),
    "lr_zero": (_none, [*TRAIN, "train.lr=0"], "train.lr must be"),
    "dropout_one": (_none, [*TRAIN, "model.dropout=1.5"], "model.dropout must be in"),
    "lr_nan": (_none, [*TRAIN, "train.lr=NaN"], "train.lr must be"),
    "epochs_string": (_none, [*TRAIN, "train.epochs=many"], "expected int"),
    "unknown_key": (_none, [*TRAIN, "train.epoch=3"], "unknown key"),
    "unknown_section": (_none, [*TRAIN, "trainer.lr=3"], "unknown section"),
    "override_without_equals": (_none, [*TRAIN, "train.lr"], "expected section.key=value"),
    "bad_literal": (_none, [*TRAIN, "train.mixup=sometimes"], "must be one of"),
    "config_json_invalid": (_none, ["train", "--data", "p", "--out", "m", "--config-json", "{x"],
                            "not valid JSON"),
    "config_json_list": (_none, ["train", "--data", "p", "--out", "m", "--config-json", "[1]"],
                         "must be a mapping"),
    "config_file_missing": (_none, [*TRAIN, "--config", "nope.yaml"], "does not exist"),
    "config_file_bad_yaml": (_file("c.yaml", "a: [1\n"), [*TRAIN, "--config", "c.yaml"],
                             "not valid UTF-8 YAML"),
    "config_file_not_utf8": (_file("c.json", b"\xff\xfe{}"), [*TRAIN, "--config", "c.json"],
                             "c.json: not valid UTF-8 JSON"),
    "config_file_a_list": (_file("c.yaml", "- 1\n"), [*TRAIN, "--config", "c.yaml"],
                           "top level must be a mapping"),
    "label_state_missing": (_none, [*TRAIN, "--label-state", "nope.json"], "nope.json"),
    "train_data_missing": (_none, ["train", "--data", "nowhere", "--out", "m", *TINY_RUN], "nowhere"),
    "out_is_cwd": (_none, ["train", "--data", "p", "--out", "."], "working directory"),
    "out_is_data": (_none, ["train", "--data", "p", "--out", "p"], "is the input p"),
    "evaluate_without_name": (_none, ["evaluate", "--data", "p", "--model", "m"],
                              "expected NAME=DIR"),
    "evaluate_empty_name": (_none, ["evaluate", "--data", "p", "--model", "=m"],
                            "expected NAME=DIR"),
    "predict_input_missing": (_none, ["predict", "--model", "m", "--input", "x.parquet",
                                      "--output", "y.parquet"], "x.parquet"),
    "predict_output_is_dir": (_none, ["predict", "--model", "m", "--input", "p/test.parquet",
                                      "--output", "raw"], "is a directory"),
    "synth_set_without_value": (_none, ["data", "synth", "o", "--preset", "tiny", "--set",
                                        "n_users"], "FIELD=VALUE"),
    "synth_set_wrong_type": (_none, ["data", "synth", "o", "--preset", "tiny", "--set",
                                     "n_users=many"], "expected int"),
    "ingest_bad_split": (_none, ["data", "ingest", "raw", "o", "--set", "split=weekly"], "split"),
    "ingest_bad_split_draw": (_none, ["data", "ingest", "raw", "o", "--set",
                                      "split_draw=shuffle"], "split_draw='shuffle'"),
    "ingest_raw_missing": (_none, ["data", "ingest", "nowhere", "o"], "not a directory"),
    "ingest_into_its_input": (_none, ["data", "ingest", "raw", "raw"], "is the input raw"),
    "ingest_uri_with_pandas": (_none, ["data", "ingest", "s3a://logs/kuairec/", "o"],
                               "read with --engine spark"),
    "validate_bad_bound": (_none, ["validate", "raw", "--input", "raw", "--out", "v", "--set",
                                   "nonsense=1"], "expected NAME=VALUE"),
    "pipeline_param_unknown": (_none, ["pipeline", "run", "--local", "--workdir", "w", "--param",
                                       "colour=red"], "expected NAME=VALUE"),
    "pipeline_param_not_json": (_none, ["pipeline", "run", "--local", "--workdir", "w", "--param",
                                        "seeds=three"], "takes JSON"),
    "compile_pvc_without_out": (_none, ["pipeline", "compile", "--train-pvc", "c"], "--out"),
    # MLflow commands without a tracking server: refused before MLflow makes a ./mlflow.db
    "reproduce_without_tracking": (_none, ["reproduce", "0123abcd"], "none writes a ./mlflow.db"),
    "predict_registry_model_without_tracking": (
        _none, ["predict", "--model", "models:/m@champion", "--input", "p/test.parquet",
                "--output", "y.parquet"], "none writes a ./mlflow.db"),
    # dataset specs
    "spec_missing": (_none, ["data", "tabular", "nope.yaml", "o"], "dataset spec not found"),
    "spec_bad_yaml": (_file("spec.yaml", "name: [x\n"), ["data", "tabular", "spec.yaml", "o"],
                      "not valid YAML"),
    "spec_not_utf8": (_file("spec.yaml", b"name: \xff\xfe\n"), ["data", "tabular", "spec.yaml",
                                                                 "o"], "spec.yaml: not UTF-8"),
    "spec_missing_label": (_spec(label="nope"), ["data", "tabular", "spec.yaml", "o"], "nope"),
    "spec_unknown_key": (_spec(colour="red"), ["data", "tabular", "spec.yaml", "o"], "colour"),
    "spec_source_missing": (_spec(source="gone.csv"), ["data", "tabular", "spec.yaml", "o"],
                            "gone.csv"),
    "spec_uri_with_pandas": (_spec(source="gs://logs/t/"), ["data", "tabular", "spec.yaml", "o"],
                             "gs://logs/t/: the pandas engine reads local files"),
    "spec_bad_split": (_spec(split={"kind": "weekly"}), ["data", "tabular", "spec.yaml", "o"],
                       "weekly"),
    "spec_bad_split_draw": (_spec(split={"kind": "random", "draw": "shuffle"}),
                            ["data", "tabular", "spec.yaml", "o"], "split.draw 'shuffle'"),
    "spec_out_is_source_folder": (_spec(source="t.csv"), ["data", "tabular", "spec.yaml", "."],
                                  "working directory"),
    # raw files
    "raw_string_ids": (_raw_with("big_matrix.csv", _first_field(b"abc")),
                       ["data", "ingest", "bad", "o"], "big_matrix.csv: column 'user_id'"),
    "raw_header_not_utf8": (_raw_with("user_features.csv", lambda d: b"\xff\xfe" + d),
                            ["data", "ingest", "bad", "o"], "user_features.csv: header line is"
                            " not UTF-8"),
    "raw_body_not_utf8": (_raw_with("item_categories.csv", lambda d: d + b"7,[\xff]\n"),
                          ["data", "ingest", "bad", "o"], "item_categories.csv"),
    "raw_empty_file": (_raw_with("small_matrix.csv", lambda d: b""),
                       ["data", "ingest", "bad", "o"], "small_matrix.csv: empty file"),
    "raw_truncated": (_raw_with("big_matrix.csv", lambda d: d[: len(d) // 2].rsplit(b",", 1)[0]),
                      ["data", "ingest", "bad", "o"], "big_matrix.csv"),
    "raw_missing_file": (_raw_with("item_categories.csv", lambda d: d), ["data", "ingest",
                         "bad/../nowhere", "o"], "not a directory"),
    "raw_float_ids": (_raw_with("big_matrix.csv", _first_field(b"3.7")),
                      ["data", "ingest", "bad", "o"], "user_id"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_naming_the_rule(case, work, tmp_path, monkeypatch, capsys):
    setup, argv, rule = CASES[case]
    for name in ("raw", "p"):
        (tmp_path / name).symlink_to(work / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    setup(tmp_path)
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert err and "Traceback" not in "\n".join(err)
    line = err[-1]
    command = (argv[0] if argv[0] in ("train", "evaluate", "predict", "reproduce")
               else " ".join(argv[:2]))
    assert line.startswith(f"grmodel {command}: error: "), line
    assert "(rule: " in line and rule in line, line
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))
    assert not (tmp_path / "mlflow.db").exists()


def test_verbose_shows_the_traceback(work, capsys):
    assert main(["-v", "train", "--data", str(work / "p"), "--out", "m", "train.epochs=0"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("grmodel train: error:")


def test_an_unreachable_kfp_api_is_one_line(capsys, monkeypatch):
    started = time.monotonic()
    status = main(["pipeline", "submit", "--host", "http://127.0.0.1:9", "--param",
                   "data_source=generate", "--param", "mlflow_tracking_uri=http://m.example"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == EXIT_ENVIRONMENT and len(err) == 1, err
    assert "not reachable (connection refused)" in err[0] and "(rule: " in err[0]
    assert time.monotonic() - started < 60


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "grmodel.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_sigterm_during_tabular_removes_the_temporary_output(tmp_path):
    rng = np.random.default_rng(0)
    n = 400_000
    pd.DataFrame({"u": rng.integers(0, 5000, n), "i": rng.integers(0, 3000, n),
                  "y": rng.exponential(10, n)}).to_parquet(tmp_path / "t.parquet")
    spec = {"name": "big", "source": "t.parquet", "label": "y", "user": {"categorical": ["u"]},
            "item": {"categorical": ["i"]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = _cli(["data", "tabular", "spec.yaml", "out"], tmp_path)
    _wait_for(lambda: any(tmp_path.glob("out.tmp-*")), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_SIGTERM, err
    assert err.strip().splitlines()[-1].startswith("grmodel data tabular: interrupted (SIGTERM)")
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml", "t.parquet"]


def test_ctrl_c_during_training_is_one_line_and_leaves_no_model(work, tmp_path):
    """The trainer notes the signal and stops at the next batch boundary, keeping that step."""
    proc = _cli(["train", "--data", str(work / "p"), "--out", "m", *TINY_RUN, "train.epochs=50",
                 "train.batch_size=64", "train.patience=50"], tmp_path)
    state = tmp_path / "m.state" / "state.json"
    _wait_for(state.is_file, proc)
    before = json.loads(state.read_text())["step"]
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    # One batch of a toy model is milliseconds; the bound allows for a starved, shared CPU.
    _, err = proc.communicate(timeout=240)
    seconds = time.monotonic() - sent
    assert proc.returncode == EXIT_SIGINT, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("grmodel train: interrupted (SIGINT)")
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob("m.tmp-*"))
    # The training state is kept for --resume, complete, at the step where it stopped.
    saved = json.loads(state.read_text())
    assert saved["epoch"] >= 1 and saved["step"] >= before, (saved["step"], before, seconds)
