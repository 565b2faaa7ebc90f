"""``grmodel data ingest --engine spark`` and ``grmodel data tabular --engine spark``: the
same datasets as the default engine; the part-file layout is what the streaming trainer reads;
without Java the command says so in one line. Tiny data (10k KuaiRec rows)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from grmodel.cli import data as commands
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.data.streaming import row_groups, split_paths
from grmodel.features import SPLITS, read_manifest


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="grmodel")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.mark.slow
@pytest.mark.long  # CI's 15 minutes: the Spark ingest equivalence runs in tests/data/spark
def test_ingest_engine_spark_parts_layout_equals_the_pandas_engine(spark, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny", seed=11))
    common = ["--split", "random", "--label-mode", "watch_ratio", "--set", "row_group_rows=1000"]
    assert _run(["data", "ingest", str(raw), str(tmp_path / "pandas"), *common]) == 0
    assert _run(["data", "ingest", str(raw), str(tmp_path / "spark"), *common,
                 "--engine", "spark", "--layout", "parts"]) == 0
    assert read_manifest(tmp_path / "spark")["engine"]["layout"] == "parts"
    for split in SPLITS:
        paths = split_paths(tmp_path / "spark", split)  # the streaming trainer's reader
        groups = [g.rows for g in row_groups(paths)]
        assert set(groups[:-1]) <= {1000}, groups
        got = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        pd.testing.assert_frame_equal(got, pd.read_parquet(tmp_path / "pandas" / f"{split}.parquet"),
                                      check_exact=True)


def test_engine_spark_without_java_is_one_clear_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nsource: t.csv\nlabel: y\nuser: {categorical: [a]}\n"
                    "item: {categorical: [b]}\n")
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3.0\n")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # the venv's tools, no java
    done = subprocess.run([sys.executable, "-m", "grmodel.cli", "data", "tabular", str(spec),
                           str(tmp_path / "out"), "--engine", "spark"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "java is not installed" in lines[0], done.stderr
    assert "openjdk-17-jre-headless" in lines[0] and not (tmp_path / "out").exists()
