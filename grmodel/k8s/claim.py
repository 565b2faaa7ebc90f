"""The shared claim: one ReadWriteMany PersistentVolumeClaim that a pipeline step and the pods
it starts (a PyTorchJob's replicas, a SparkApplication's driver and executors) all mount, so
inputs go in and outputs come back as plain files."""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

DEFAULT_MOUNT = "/mnt/grmodel"  # where the pods (and, by default, the step) mount the claim


@dataclass(frozen=True)
class SharedClaim:
    """Claim ``name``, mounted at ``mount_path`` in the pods and at ``local_mount`` in this
    pod (default: the same path)."""

    name: str
    mount_path: str = DEFAULT_MOUNT
    local_mount: Path | None = None

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any]) -> SharedClaim:
        """Claim ``name``, with ``mount_path`` and ``local_mount`` taken out of job ``options``."""
        local = options.pop("local_mount", None)
        return cls(name, options.pop("mount_path", DEFAULT_MOUNT), Path(local) if local else None)

    @property
    def here(self) -> Path:
        return Path(self.local_mount or self.mount_path)

    def in_pods(self, relative: str) -> str:
        """The path the pods see for ``relative`` (a path inside the claim)."""
        return f"{self.mount_path}/{relative}"

    def local(self, pod_path: str) -> Path:
        """Where a path the pods see is here."""
        return self.here / PurePosixPath(pod_path).relative_to(self.mount_path)

    def check_paths(self, kind: str, name: str, paths: dict[str, str | None]) -> None:
        """Refuse a pod path outside the claim: every pod reads and writes through it."""
        for label, path in paths.items():
            if path is not None and not PurePosixPath(path).is_relative_to(self.mount_path):
                raise ValueError(f"{kind} {name}: {label}={path!r} is not under the volume mount"
                                 f" {self.mount_path!r} (rule: every pod reads and writes the"
                                 " shared claim)")

    def stage(self, job_dir: str, inputs: dict[str, Path]) -> dict[str, str]:
        """Copy each input directory to ``job_dir/<label>`` on the claim and return the paths
        the pods see. ``job_dir`` names what it holds (a digest), so a copy already there is
        the same and is kept; each copy lands whole or not at all."""
        for label, source in inputs.items():
            target = self.here / job_dir / label
            if not target.exists():
                partial = target.with_name(f".{label}.tmp-{secrets.token_hex(4)}")
                try:
                    shutil.copytree(source, partial)
                    os.replace(partial, target)
                finally:
                    shutil.rmtree(partial, ignore_errors=True)
        return {label: self.in_pods(f"{job_dir}/{label}") for label in inputs}
