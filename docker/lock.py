"""Regenerate or check the dependency locks under ``requirements/``.

    python docker/lock.py           # resolve pyproject.toml again and rewrite the three locks
    python docker/lock.py --check   # offline: exit 1 when pyproject.toml and the locks disagree

Three locks, one resolution: ``dev.lock`` (runtime + the ``dev`` extra, CPU torch) is resolved
first and is what ``make test`` and CI install; ``runtime.lock`` (docker/Dockerfile) is resolved
under ``dev.lock`` as constraints, so every package the runtime image holds has the version CI
tested; ``gpu.lock`` (docker/Dockerfile.gpu) is resolved under ``runtime.lock`` with only torch
swapped for PyPI's CUDA build, which adds the ``nvidia-*``/``cuda-*``/``triton`` wheels and nothing
else. Each lock records a digest of pyproject.toml's dependency lists; ``--check`` (and
tests/docker/test_locks.py) fail when that digest is stale or a requirement is not satisfied.

Resolution runs pip's own resolver (``pip install --dry-run --report``) with this machine's pip
configuration, so it must run on the target: CPython 3.11 on Linux x86_64. The CPU locks need a
source for the ``+cpu`` torch wheel (a wheel directory via ``PIP_FIND_LINKS``, or the PyTorch CPU
index via ``PIP_EXTRA_INDEX_URL``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = "requirements"
TARGET = "CPython 3.11, Linux x86_64 (manylinux)"
TORCH_VERSION = "2.13.0"
CPU_TORCH = f"torch=={TORCH_VERSION}+cpu"
# Arbitrary equality: the plain PyPI build only, never a "+cpu" wheel a local wheel directory offers.
GPU_TORCH = f"torch==={TORCH_VERSION}"
# What the CUDA torch build adds to the runtime closure; nothing else may differ between the two.
GPU_ONLY = re.compile(r"^(nvidia-.+|cuda-.+|triton)$")
DIGEST_KEY = "pyproject-digest"


@dataclass(frozen=True)
class Lock:
    name: str
    extras: tuple[str, ...]
    torch: str
    purpose: str

    def path(self, root: Path = ROOT) -> Path:
        return root / LOCK_DIR / f"{self.name}.lock"


LOCKS = {
    "dev": Lock("dev", ("dev", "spark"), CPU_TORCH,
                "tests and CI (`make test`): runtime + the dev and spark extras, CPU torch"),
    "runtime": Lock("runtime", (), CPU_TORCH, "the runtime image, docker/Dockerfile: CPU torch"),
    "gpu": Lock("gpu", (), GPU_TORCH, "the training image, docker/Dockerfile.gpu: PyPI's CUDA torch"),
}


# --- pyproject -------------------------------------------------------------------------------


def load_project(root: Path = ROOT) -> dict:
    with open(root / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]


def requirements(project: dict, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The project's requirements, with those of ``extras``; markers that do not apply dropped."""
    texts = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        texts += optional[extra]
    reqs = [Requirement(text) for text in texts]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def pyproject_digest(project: dict) -> str:
    """sha256 of the dependency lists (normalised, order-free) and requires-python."""
    def norm(texts: list[str]) -> list[str]:
        return sorted(str(Requirement(t)) for t in texts)

    payload = {
        "requires-python": project.get("requires-python", ""),
        "dependencies": norm(project.get("dependencies", [])),
        "optional-dependencies": {k: norm(v) for k, v in project.get("optional-dependencies", {}).items()},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


# --- lock files ------------------------------------------------------------------------------


def read_lock(path: Path) -> tuple[dict[str, str], dict[str, Version]]:
    """(header ``key: value`` fields, pins by canonical name) of a lock file."""
    header: dict[str, str] = {}
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            key, sep, value = stripped.lstrip("# ").partition(": ")
            if sep and " " not in key:
                header.setdefault(key, value.strip())
            continue
        if not stripped or stripped.startswith("-"):
            continue
        req = Requirement(stripped)
        (spec,) = req.specifier
        if spec.operator not in ("==", "==="):
            raise ValueError(f"{path}: {stripped!r} is not an exact pin")
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return header, pins


def render(lock: Lock, digest: str, pins: dict[str, str], via: dict[str, set[str]]) -> str:
    lines = [
        f"# {LOCK_DIR}/{lock.name}.lock: {lock.purpose}.",
        "# Generated by `python docker/lock.py` from pyproject.toml: edit that file and regenerate;",
        "# `python docker/lock.py --check` (and tests/docker/test_locks.py) fail when they disagree.",
        f"# Install: pip install --no-deps -r {LOCK_DIR}/{lock.name}.lock  (every dependency is listed)",
        f"# target: {TARGET}",
        f"# torch: {lock.torch.split('=')[-1]}",
        f"# {DIGEST_KEY}: {digest}",
        "",
    ]
    for name in sorted(pins):
        lines.append(f"{name}=={pins[name]}")
        if via.get(name):
            lines.append(f"    # via {', '.join(sorted(via[name]))}")
    return "\n".join(lines) + "\n"


# --- resolution ------------------------------------------------------------------------------


def _pip_resolve(reqs: list[str], constraints: list[str]) -> list[dict]:
    """pip's resolution of ``reqs`` under ``constraints``: the report's ``install`` entries."""
    with tempfile.TemporaryDirectory() as tmp:
        req_file, con_file, report = Path(tmp, "in.txt"), Path(tmp, "constraints.txt"), Path(tmp, "r.json")
        req_file.write_text("\n".join(reqs) + "\n")
        con_file.write_text("\n".join(constraints) + "\n")
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "-r", str(req_file), "-c", str(con_file)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"pip could not resolve {reqs} under {len(constraints)} constraints")
        return json.loads(report.read_text())["install"]


def _reverse_deps(install: list[dict], top: list[tuple[Requirement, str]]) -> dict[str, set[str]]:
    """Who pulls in whom (``# via`` comments), following extras and environment markers."""
    names = {canonicalize_name(i["metadata"]["name"]) for i in install}
    deps = {canonicalize_name(i["metadata"]["name"]): [Requirement(r) for r in
            i["metadata"].get("requires_dist", [])] for i in install}
    extras: dict[str, set[str]] = defaultdict(set)
    via: dict[str, set[str]] = defaultdict(set)
    for req, label in top:
        extras[canonicalize_name(req.name)] |= set(req.extras)
        via[canonicalize_name(req.name)].add(label)
    changed = True
    while changed:
        changed = False
        for parent, reqs in deps.items():
            for req in reqs:
                child = canonicalize_name(req.name)
                active = req.marker is None or any(
                    req.marker.evaluate({"extra": e}) for e in {""} | extras[parent])
                if not active or child not in names or child == parent:
                    continue
                if parent not in via[child] or not set(req.extras) <= extras[child]:
                    via[child].add(parent)
                    extras[child] |= set(req.extras)
                    changed = True
    return via


def resolve(lock: Lock, project: dict, constraints: list[str]) -> tuple[dict[str, str], dict[str, set[str]]]:
    own = canonicalize_name(project["name"])
    top = [(r, own) for r in requirements(project)]
    for extra in lock.extras:
        top += [(r, f"{own}[{extra}]") for r in requirements({"optional-dependencies": {
            extra: project["optional-dependencies"][extra]}}, (extra,))]
    install = _pip_resolve([str(r) for r, _ in top], constraints + [lock.torch])
    pins = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in install}
    pins.pop(own, None)
    return pins, _reverse_deps(install, top)


def generate(root: Path = ROOT) -> None:
    if sys.version_info[:2] != (3, 11) or platform.system() != "Linux" or platform.machine() != "x86_64":
        raise SystemExit(f"resolve on the target ({TARGET}); this is Python {platform.python_version()} "
                         f"on {platform.system()} {platform.machine()}")
    project = load_project(root)
    digest = pyproject_digest(project)
    (root / LOCK_DIR).mkdir(exist_ok=True)
    dev, dev_via = resolve(LOCKS["dev"], project, [])
    runtime, runtime_via = resolve(LOCKS["runtime"], project, [f"{n}=={v}" for n, v in dev.items()
                                                               if n != "torch"])
    gpu, gpu_via = resolve(LOCKS["gpu"], project, [f"{n}=={v}" for n, v in runtime.items()
                                                   if n != "torch"])
    for lock, pins, via in ((LOCKS["dev"], dev, dev_via), (LOCKS["runtime"], runtime, runtime_via),
                            (LOCKS["gpu"], gpu, gpu_via)):
        lock.path(root).write_text(render(lock, digest, pins, via))
        print(f"wrote {lock.path(root).relative_to(root)}: {len(pins)} packages")
    problems = check(root)
    if problems:
        raise SystemExit("\n".join(problems))


# --- check -----------------------------------------------------------------------------------


def check(root: Path = ROOT) -> list[str]:
    """Every way pyproject.toml and the locks disagree (empty when they agree)."""
    project = load_project(root)
    digest = pyproject_digest(project)
    problems: list[str] = []
    pins: dict[str, dict[str, Version]] = {}
    for lock in LOCKS.values():
        path = lock.path(root)
        if not path.exists():
            problems.append(f"{path.relative_to(root)} is missing: run `python docker/lock.py`")
            continue
        header, pins[lock.name] = read_lock(path)
        if header.get(DIGEST_KEY) != digest:
            problems.append(f"{path.relative_to(root)} was generated from other pyproject.toml "
                            f"dependencies ({header.get(DIGEST_KEY)} != {digest}): "
                            "run `python docker/lock.py`")
        for req in requirements(project, lock.extras):
            have = pins[lock.name].get(canonicalize_name(req.name))
            if have is None:
                problems.append(f"{path.relative_to(root)} lacks {req}")
            elif not req.specifier.contains(have, prereleases=True):
                problems.append(f"{path.relative_to(root)} pins {req.name}=={have}, outside {req}")
        torch_want = Version(lock.torch.split("=")[-1])
        if pins[lock.name].get("torch") != torch_want:
            problems.append(f"{path.relative_to(root)} pins torch {pins[lock.name].get('torch')}, "
                            f"docker/lock.py wants {torch_want}")
    if len(pins) == len(LOCKS):
        problems += _consistency(pins["dev"], pins["runtime"], pins["gpu"])
    return problems


def _consistency(dev: dict[str, Version], runtime: dict[str, Version], gpu: dict[str, Version]) -> list[str]:
    problems = []
    for name, version in sorted(runtime.items()):
        if dev.get(name) != version:
            problems.append(f"runtime.lock pins {name}=={version} "
                            f"but dev.lock (what CI tests) has {dev.get(name)}")
        if name != "torch" and gpu.get(name) != version:
            problems.append(f"gpu.lock pins {name}=={gpu.get(name)}, runtime.lock {version}")
    for name in sorted(set(gpu) - set(runtime)):
        if not GPU_ONLY.match(name):
            problems.append(f"gpu.lock adds {name}, which is not part of the CUDA torch build")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify only (offline); exit 1 on disagreement")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        print("locks agree with pyproject.toml" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    generate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
