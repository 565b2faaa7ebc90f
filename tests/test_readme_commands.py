"""Every command block of the README and docs/, run as written after a tiny main job.

The main job runs first (``grmodel main`` on the tiny preset, small models) in a scratch
directory, so ``runs/main/latest/...`` exists there as after ``make main``. Then each command of
each ```bash block runs in that directory, in document order, and must exit 0. Commands that
cannot run here are listed in SKIPPED with the reason. Training sizes are made tiny through
``GRMODEL_OVERRIDES`` (applied after a command's own overrides), not by editing the commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import TINY_RUN

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

# (pattern matched at the start of a command, why it does not run here)
SKIPPED = [
    (r"make main\b", "the tiny main job of this test runs it (the default preset takes ~8 min)"),
    (r"make test\b", "the test suite itself"),
    (r"make images\b", "needs docker or podman and a registry to push to"),
    (r"make lock\b", "needs the package index and rewrites requirements/*.lock"),
    (r"grmodel pipeline compile\s*(#|$)", "rewrites the committed pipelines/grmodel_pipeline.yaml"
                                          " (tests/pipeline/test_compile.py checks it matches)"),
    (r"grmodel pipeline run --local", "a second whole pipeline run (minutes); the tiny main job"
                                      " runs the same DAG"),
    (r"grmodel pipeline (submit|schedule)", "needs a Kubeflow Pipelines cluster"),
    (r"export MLFLOW_TRACKING_URI=http", "points at the cluster's MLflow, for the submit after it"),
    (r"kubectl\b", "needs a Kubernetes cluster"),
    (r"mlflow ui\b", "starts a server that runs until it is stopped"),
    (r"grmodel experiment table1 --generate default", "the paper experiment on the default preset"
                                                      " (minutes); tests/experiments run it tiny"),
    (r"grmodel experiment robustness .*--preset default", "five generated datasets at the default"
                                                          " preset (minutes); the tiny run runs"),
    (r"grmodel reproduce RUN_ID", "RUN_ID is a placeholder for an MLflow run id"),
    (r"grmodel experiment days", "a local pipeline run per day (tens of minutes);"
                                 " tests/experiments/test_day_by_day.py runs three tiny days (long)"),
    (r"grmodel registry history .*runs/nights/", "reads the registry of the simulated nights,"
                                                  " which the skipped `grmodel experiment days`"
                                                  " writes"),
]
# One epoch of a tiny model teaches it nothing yet: keep such a model, marked (the commands are
# checked for running as written, not for what one epoch learns).
TINY = " ".join([*TINY_RUN, "train.epochs=1", "train.on_collapse=warn"])


def commands(path: Path) -> list[str]:
    """The commands of the ```bash blocks in ``path``: continuations joined, comments kept."""
    found, block = [], None
    for line in path.read_text().splitlines():
        if line.strip().startswith("```"):
            block = [] if block is None and line.strip() == "```bash" else None
            continue
        if block is not None:
            text = line.strip()
            if found and found[-1].endswith("\\"):
                found[-1] = found[-1][:-1].rstrip() + " " + text
            elif text and not text.startswith("#"):
                found.append(text)
    return found


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIPPED if re.match(pattern, command)), None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, pipeline_overrides):
    """A scratch directory after a tiny main job, as the README's commands expect."""
    work = tmp_path_factory.mktemp("readme")
    env = _env()
    done = subprocess.run([str(BIN / "grmodel"), "main", "--preset", "tiny", "--seed", "3",
                           *pipeline_overrides], cwd=work, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (work / "console.txt").write_text(done.stdout + done.stderr)
    return work


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
            "GRMODEL_OVERRIDES": TINY, "MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.mark.long
def test_the_main_job_console_is_short(workdir):
    console = (workdir / "console.txt").read_text()
    assert len(console.splitlines()) <= 80, console
    assert "✓ train-gr" in console and "registry:  grmodel-gr version 1" in console
    assert "runs/main/latest/report/report.md" in console


@pytest.mark.long
def test_every_runnable_command_of_the_docs_runs_as_written(workdir):
    ran, failed = [], []
    for doc in DOCS:
        for command in commands(doc):
            if skip_reason(command):
                continue
            done = subprocess.run(["bash", "-c", command], cwd=workdir, env=_env(),
                                  capture_output=True, text=True, timeout=900)
            ran.append(command)
            if done.returncode != 0:
                failed.append(f"{doc.name}: {command}\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    assert not failed, "\n\n".join(failed)
    # The README's user commands are among those that ran (a doc edit cannot skip them all).
    for start in ("grmodel train --data runs/main/latest/processed", "grmodel predict",
                  "grmodel evaluate", "grmodel validate raw", "grmodel registry history",
                  "torchrun"):
        assert any(c.startswith(start) for c in ran), start
    assert (workdir / "runs" / "predictions.parquet").is_file()


def test_the_parser_finds_blocks_and_every_skip_matches_a_command():
    every = [c for doc in DOCS for c in commands(doc)]
    assert any(c.startswith("make main   # the main job") for c in every)
    assert any(c.startswith("grmodel pipeline submit --host http://ml-pipeline.kubeflow:8888 "
                            "--experiment grmodel --param") for c in every)  # continuation joined
    unused = [p for p, _ in SKIPPED if not any(re.match(p, c) for c in every)]
    assert not unused, f"SKIPPED entries that match no command any more: {unused}"


def inline_commands(path: Path) -> list[str]:
    """The ``grmodel ...`` and ``mlflow ...`` commands the prose of ``path`` quotes in
    backticks (not the bash blocks): shown to a reader, so their options must exist too."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return re.findall(r"`((?:grmodel|mlflow) [^`]*)`", text)


def _help(argv: list[str]) -> str:
    """What ``argv --help`` prints (grmodel in this process, mlflow as a program)."""
    if argv[0] == "mlflow":
        done = subprocess.run([str(BIN / "mlflow"), *argv[1:], "--help"], capture_output=True,
                              text=True, timeout=300, env=_env())
        return done.stdout
    # lazy: the CLI, only for the grmodel commands the docs quote
    import contextlib
    import io

    from grmodel.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main([*argv[1:], "--help"])
    return out.getvalue()


def test_every_option_the_prose_quotes_exists():
    """E.g. `mlflow runs list --experiment-name grmodel` read well but failed: mlflow's CLI takes
    --experiment-id. Each quoted command's options are checked against its --help."""
    wrong = []
    for doc in DOCS:
        for command in inline_commands(doc):
            words = command.split()
            if "..." in words or any(w.startswith("<") for w in words[:3]):
                continue  # an elided command
            path = [w for w in words[:4] if re.fullmatch(r"[a-z][a-z0-9-]*", w)]
            options = [w.split("=")[0] for w in words if w.startswith("--")]
            if not options:
                continue
            shown = _help(path) + _help(path[:1])
            wrong += [f"{doc.name}: `{command}`: {o}" for o in options if o not in shown]
    assert not wrong, "\n".join(wrong)
