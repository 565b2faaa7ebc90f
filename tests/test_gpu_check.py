"""bench/gpu_check.sh without a GPU: its CPU dry run goes through every step and records each
one's status and figures in one JSON file; on a machine whose torch sees no CUDA device the GPU
check says so and skips what needs one; a spent budget skips steps rather than overrunning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["environment", "cuda_tests", "bench_train_gpu", "bench_gr"]
CUDA_TESTS = {"test_gr_trained_on_cuda_learns_and_predicts_the_same_on_cpu",
              "test_bf16_autocast_stays_within_the_stated_tolerance_of_fp32",
              "test_cached_decoder_on_cuda_gives_the_uncached_predictions",
              "test_nccl_ddp_broadcasts_weights_and_averages_gradients"}


def gpu_check(tmp_path: Path, *args: str, python: str | None = sys.executable):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "GRMODEL_PYTHON")}
    env.update({"XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})
    if python:
        env["GRMODEL_PYTHON"] = python
    out = tmp_path / "out"
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--out", str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    report = json.loads((out / "gpu_check.json").read_text())
    return done, report, out


@pytest.mark.slow
@pytest.mark.long
def test_cpu_dry_run_records_every_step_and_figure(tmp_path):
    done, report, out = gpu_check(tmp_path, "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["ok"] is True and report["device"] == "cpu"
    assert report["python"] == {"interpreter": sys.executable, "route": "GRMODEL_PYTHON", "rejected": []}
    assert list(report["steps"]) == STEPS
    for name, step in report["steps"].items():
        assert step["status"] == "passed" and step["exit_code"] == 0, (name, step)
        assert 0 < step["seconds"] <= step["timeout_seconds"]
    steps = report["steps"]
    found = steps["environment"]["figures"]
    assert (found["torch"], found["cuda_available"]) == (torch.__version__, torch.cuda.is_available())

    tests = steps["cuda_tests"]["figures"]
    assert {t["test"].rsplit("::", 1)[1] for t in tests["tests"]} >= CUDA_TESTS
    if not torch.cuda.is_available():
        assert tests["counts"]["skipped"] == len(tests["tests"])
        assert all(t["message"].startswith("no CUDA device") for t in tests["tests"])

    train = steps["bench_train_gpu"]["figures"]
    assert train["samples_per_second"] > 0 and train["steps"] == 4 and train["batch_size"] == 64
    assert (train["model"]["d_model"], train["model"]["n_layers"], train["model"]["n_heads"]) == (128, 3, 8)
    gr = steps["bench_gr"]["figures"]
    assert set(gr["train_samples_per_second"]) == {"grad", "detached"}  # both CLEM variants
    assert min(gr["train_samples_per_second"].values()) > 0 and gr["mixup"] == "window"
    assert gr["predict_source"].startswith(train["model_dir"])  # it decoded the model just trained
    assert len(gr["predict_rows_per_second"]) == 3 and min(gr["predict_rows_per_second"].values()) > 0

    log = (out / "gpu_check.log").read_text()
    assert all(f"===== {name}:" in log for name in STEPS)
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens without a CUDA device")
def test_gpu_check_without_cuda_says_so_and_skips_what_needs_it(tmp_path):
    # No GRMODEL_PYTHON: every candidate is tried and rejected (none sees a GPU); nothing is
    # installed (no GPU here, and a budget that leaves no time for it besides).
    done, report, _ = gpu_check(tmp_path, "--budget", "150", python=None)
    assert done.returncode == 1
    assert report["ok"] is False and report["device"] == "cuda"
    assert report["python"]["route"].startswith("none fits")
    assert any("requirements/gpu.lock" in line for line in report["python"]["rejected"])
    for name in STEPS[1:]:
        step = report["steps"][name]
        assert step["status"] == "skipped", (name, step)
        assert "sees no CUDA device" in step["reason"] or "no environment probe" in step["reason"]


def test_a_spent_budget_skips_steps_and_still_writes_the_report(tmp_path):
    done, report, _ = gpu_check(tmp_path, "--device", "cpu", "--budget", "20")
    assert done.returncode == 1
    assert report["ok"] is False and list(report["steps"]) == STEPS
    assert all(s["status"] == "skipped" and s["reason"].startswith("budget spent")
               for s in report["steps"].values())
