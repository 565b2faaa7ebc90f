"""The steps of ``bench/gpu_check.sh``, each in a subprocess with its own timeout, and the one
JSON file that records every step's status and figures (rewritten after each step, so a check
cut short still leaves what it measured).

    python bench/_gpu_check.py run --device cuda --out DIR --budget 480   # (gpu_check.sh does this)
    python bench/_gpu_check.py probe                                       # torch and its device, as JSON

Steps: ``environment`` (torch, CUDA, NCCL, the device), ``cuda_tests`` (``pytest -m cuda`` on
the test files that carry the mark; their measured differences come from the JUnit report's
properties), ``bench_train_gpu`` (the real trainer; it keeps its model) and ``bench_gr``
(training and prediction speed; it decodes the model ``bench_train_gpu`` trained). Only the
standard library is imported here: the probe imports torch in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT, LOG = "gpu_check.json", "gpu_check.log"
REPORT_RESERVE_S = 10  # kept back from the budget for the last report write
MIN_STEP_S = 15  # a step that would get less is skipped, not started
# Sizes per mode. cuda: the paper's (batch 512, d_model 128, 3 layers, 8 heads, window mixup;
# the model sizes are RunConfig's defaults) on the main job's data size. cpu: a dry run that
# goes through every step in seconds.
SIZES = {
    "cuda": {
        "bench_train_gpu": ["--preset", "default", "--steps", "400", "--batch-size", "512"],
        "bench_gr": ["--train-batches", "200", "--predict-rows", "16384"],
    },
    "cpu": {
        "bench_train_gpu": ["--preset", "tiny", "--steps", "4", "--batch-size", "64", "--threads", "1"],
        "bench_gr": ["--threads", "1", "--train-batches", "4", "--batch-size", "64", "--predict-rows", "256"],
    },
}
TIMEOUT_S = {"environment": 90, "cuda_tests": 240, "bench_train_gpu": 150, "bench_gr": 120}
CUDA_MARK = re.compile(r"pytest\.mark\.cuda\b")


def probe() -> dict:
    """What this interpreter's torch is and sees (run in the step's own process)."""
    import torch

    found = {
        "python": sys.executable, "python_version": platform.python_version(),
        "torch": torch.__version__, "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0], "pytest": _version("pytest"),
    }
    if found["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        found.update({
            "gpu_count": torch.cuda.device_count(), "gpu": props.name,
            "gpu_memory_gb": round(props.total_memory / 1024**3, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "nccl": ".".join(map(str, torch.cuda.nccl.version())),
            "cudnn": torch.backends.cudnn.version(), "driver": _driver(),
        })
    return found


def _driver() -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def cuda_test_files() -> list[str]:
    """Test files that carry the ``cuda`` mark (the mark is the one place that says so)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if CUDA_MARK.search(p.read_text()))


def junit_summary(path: Path) -> dict:
    """Counts and, per test, its outcome, seconds, message and recorded properties."""
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome, message = {"failure": "failed"}.get(tag, tag), found.get("message")
        props = {p.get("name"): _number(p.get("value")) for p in case.iter("property")}
        tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time", 0)), "message": message, "figures": props})
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "tests": tests}


def _number(text: str | None) -> float | str | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


class Check:
    def __init__(self, device: str, out: Path, budget: float, started: float, python: dict):
        self.device, self.out, self.deadline = device, out, started + budget
        self.log = out / LOG
        self.report = {
            "check": "bench/gpu_check.sh", "device": device, "ok": False,
            "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "budget_seconds": budget, "wall_seconds": None, "git_commit": _git_commit(),
            "python": python, "sizes": SIZES[device], "steps": {},
        }
        self.started = started

    def run(self, name: str, command: list[str], env: dict[str, str] | None = None,
            skip: str | None = None) -> dict:
        """Run one step (or record why not) and rewrite the report."""
        left = self.deadline - time.time() - REPORT_RESERVE_S
        timeout = min(TIMEOUT_S[name], left)
        step = {"status": "skipped", "reason": skip, "timeout_seconds": round(timeout),
                "command": " ".join(command)}
        if timeout < MIN_STEP_S:
            step["reason"] = f"budget spent ({left:.0f} s left)"
        elif skip is None:
            step.update(self._execute(name, command, env, timeout))
        self.report["steps"][name] = step
        self.write()
        print(f"[gpu_check] {name}: {step['status']}"
              + (f" ({step['reason']})" if step.get("reason") else "")
              + (f" in {step['seconds']:.0f} s" if "seconds" in step else ""), flush=True)
        return step

    def _execute(self, name: str, command: list[str], env: dict[str, str] | None, timeout: float) -> dict:
        with self.log.open("a") as log:
            log.write(f"\n===== {name}: {' '.join(command)}\n")
            log.flush()
            begin, start = log.tell(), time.perf_counter()
            # A session of its own, so a timeout ends the step's whole process group.
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
            try:
                code, status = proc.wait(timeout=timeout), None
            except subprocess.TimeoutExpired:
                _stop(proc)
                code, status = proc.returncode, "timed out"
        seconds = time.perf_counter() - start
        with self.log.open() as log:
            log.seek(begin)
            tail = log.read().splitlines()[-25:]
        return {"status": status or ("passed" if code == 0 else "failed"), "exit_code": code,
                "seconds": round(seconds, 1), "log_tail": tail}

    def write(self) -> None:
        self.report["wall_seconds"] = round(time.time() - self.started, 1)
        steps = self.report["steps"].values()
        self.report["ok"] = bool(steps) and all(s["status"] == "passed" for s in steps)
        tmp = self.out / f".{REPORT}.tmp"
        tmp.write_text(json.dumps(self.report, indent=2) + "\n")
        tmp.replace(self.out / REPORT)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is not None and done.returncode == 0:
        return done.stdout.strip()
    return os.environ.get("GRMODEL_GIT_COMMIT")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_check(device: str, out: Path, budget: float, started: float, python: dict) -> bool:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG).write_text("")
    check = Check(device, out, budget, started, python)
    py = sys.executable
    # grmodel from this tree, whether or not the interpreter has it installed.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        step = check.run("environment", [py, __file__, "probe", "--json", str(work / "env.json")], env)
        found = _read_json(work / "env.json") or {}
        step["figures"] = found
        blocked = None
        if not found:
            blocked = "no environment probe result (is torch installed?)"
        elif device == "cuda" and not found.get("cuda_available"):
            blocked = f"torch {found['torch']} (CUDA build {found['torch_cuda_build']}) sees no CUDA device"
        no_pytest = None if found.get("pytest") else "pytest is not installed for this interpreter"
        tests = check.run("cuda_tests", [
            py, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
            "-o", "junit_family=xunit1", f"--junitxml={work / 'cuda_tests.xml'}", *cuda_test_files(),
        ], env, skip=blocked or no_pytest)
        if (work / "cuda_tests.xml").is_file():
            tests["figures"] = junit_summary(work / "cuda_tests.xml")
            counts = tests["figures"]["counts"]
            if tests["status"] == "passed" and device == "cuda" and counts["skipped"]:
                tests["status"], tests["reason"] = "failed", f"{counts['skipped']} CUDA tests skipped"
        model = work / "model"
        train = check.run("bench_train_gpu", [
            py, "bench/bench_train_gpu.py", "--device", device, *SIZES[device]["bench_train_gpu"],
            "--json", str(work / "train.json"), "--model-out", str(model),
        ], env, skip=blocked)
        train["figures"] = _read_json(work / "train.json")
        # Decoding speed depends on how many steps rows take: decode the model just trained, on
        # its test split, when there is one (bench_gr.py's docstring).
        trained = ["--model-dir", str(model), "--data", train["figures"]["data"]] if (
            train["status"] == "passed" and train["figures"]) else []
        gr = check.run("bench_gr", [
            py, "bench/bench_gr.py", "--device", device, *SIZES[device]["bench_gr"], *trained,
            "--json", str(work / "gr.json"),
        ], env, skip=blocked)
        gr["figures"] = _read_json(work / "gr.json")
        check.write()
    summary(check.report, out)
    return check.report["ok"]


def summary(report: dict, report_dir: Path) -> None:
    """A few lines for people; the JSON holds everything."""
    steps = report["steps"]
    env = steps.get("environment", {}).get("figures") or {}
    torch = (f"torch {env['torch']} (CUDA build {env['torch_cuda_build']})" if env
             else "torch did not import")
    print(f"[gpu_check] {'OK' if report['ok'] else 'NOT OK'} in {report['wall_seconds']:.0f} s on"
          f" {env.get('gpu') or 'CPU'}; {torch}; {REPORT} in {report_dir}")
    tests = steps.get("cuda_tests", {}).get("figures")
    if tests:
        print(f"[gpu_check] CUDA tests: {tests['counts']}")
    train = steps.get("bench_train_gpu", {}).get("figures")
    if train:
        print(f"[gpu_check] trainer: {train['samples_per_second']:,.0f} samples/s ({train['precision']},"
              f" batch {train['batch_size']}, {train['steps']} steps)")
    gr = steps.get("bench_gr", {}).get("figures")
    if gr:
        rates = ", ".join(f"{k} {v:,.0f}" for k, v in gr["predict_rows_per_second"].items())
        training = ", ".join(f"CLEM pass 1 {k} {v:,.0f}"
                             for k, v in gr["train_samples_per_second"].items())
        print(f"[gpu_check] bench_gr: training samples/s: {training}; prediction rows/s: {rates}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="all steps, one JSON report")
    run.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check")
    run.add_argument("--started", type=float, default=None, help="epoch seconds the check began")
    run.add_argument("--python-json", default="{}", help="how the interpreter was chosen (JSON)")
    show = sub.add_parser("probe", help="torch and its device, as JSON")
    show.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "probe":
        found = json.dumps(probe(), indent=2)
        print(found)
        if args.json:
            args.json.write_text(found)
        return
    ok = run_check(args.device, args.out, args.budget, args.started or time.time(),
                   json.loads(args.python_json))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
