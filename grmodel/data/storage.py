"""Where an input table lives: a local path or an object-storage URI (``s3a://``, ``gs://``,
``abfs://``, ``hdfs://``, ``file://``).

Spark reads a URI itself, through the Hadoop connector its image carries (docs/scale.md).
The driver's own reads (is it a file or a directory, the Parquet files under a prefix, their
footers for row positions, a file's sha256) go through pyarrow's filesystems, which speak S3,
GCS, Azure and HDFS without Hadoop. The two name S3 differently: Hadoop's ``s3a://`` (and the
old ``s3n://``) is pyarrow's ``s3://``. Credentials come from each client's environment (for S3:
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``; a non-AWS endpoint is ``AWS_ENDPOINT_URL``
for pyarrow and ``spark.hadoop.fs.s3a.endpoint`` for Spark), never from a URI, so they stay out
of specs, manifests and logs. Only the Spark engine reads URIs; the pandas engine reads local
files (``local_path``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import BinaryIO
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from grmodel.data.io import DataSpecError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Hadoop's scheme -> pyarrow's, where they differ.
_PYARROW_SCHEMES = {"s3a": "s3", "s3n": "s3"}
_HASH_BLOCK = 8 << 20


def is_uri(text: str | Path) -> bool:
    """Whether ``text`` names a location by URI (``scheme://...``) rather than a local path."""
    return isinstance(text, str) and bool(_SCHEME.match(text))


@dataclass(frozen=True)
class Location:
    """A file or directory: ``uri`` as Spark reads it and messages name it (a local path as
    ``Path`` writes it, else the URI), and pyarrow's filesystem and path for the driver's reads.

    It answers the few ``Path`` calls the raw-file readers make (``/``, ``is_file``, ``is_dir``,
    ``open("rb")``, ``stat().st_size``), so they read a URI as they read a path."""

    uri: str
    fs: pafs.FileSystem
    path: str

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def kind(self) -> str:
        """``file``, ``directory`` or ``missing``."""
        found = self.fs.get_file_info(self.path).type
        if found == pafs.FileType.File:
            return "file"
        return "directory" if found == pafs.FileType.Directory else "missing"

    def child(self, relative: str) -> Location:
        return Location(f"{self.uri.rstrip('/')}/{relative}", self.fs,
                        f"{self.path.rstrip('/')}/{relative}")

    __truediv__ = child

    def is_file(self) -> bool:
        return self.kind() == "file"

    def is_dir(self) -> bool:
        return self.kind() == "directory"

    def stat(self) -> SimpleNamespace:
        return SimpleNamespace(st_size=self.fs.get_file_info(self.path).size)

    def files(self, suffix: str) -> list[Location]:
        """The files under this directory (at any depth) whose names end with ``suffix``,
        sorted by their path below it."""
        base = self.path.rstrip("/") + "/"
        found = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True))
        relative = sorted(info.path[len(base):] for info in found
                          if info.type == pafs.FileType.File and info.path.endswith(suffix)
                          and info.path.startswith(base))
        return [self.child(name) for name in relative]

    def relative_parts(self, inside: Location) -> tuple[str, ...]:
        """This file's folders below the directory ``inside`` (e.g. ``('date=2024-01-01',)``)."""
        base = inside.path.rstrip("/") + "/"
        return tuple(self.path[len(base):].split("/")[:-1])

    def open(self, mode: str = "rb") -> BinaryIO:
        """A random-access reader (pyarrow's NativeFile), e.g. for a Parquet footer."""
        if mode != "rb":
            raise ValueError(f"{self}: input locations open for reading only (mode 'rb')")
        return self.fs.open_input_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read().decode(encoding)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.fs.open_input_stream(self.path) as stream:
            while block := stream.read(_HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def spark_file_uri(self) -> str:
        """The name Spark's ``_metadata.file_path`` gives this file (``file:///...`` locally)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return Path(self.path).resolve().as_uri()
        return self.uri


def local_path(source: str | Path) -> Path:
    """``source`` as a Path, for the pandas engine, which reads local files only."""
    if is_uri(source):
        raise DataSpecError(f"{source}: the pandas engine reads local files (rule: an"
                            " object-storage source is read with --engine spark)")
    return Path(source)


def location(source: str | Path) -> Location:
    """The Location of a local path or a URI. One line naming the URI (credentials masked)
    when it carries credentials or options, or when no filesystem serves its scheme."""
    if not is_uri(source):
        return Location(str(Path(source)), pafs.LocalFileSystem(), str(Path(source).absolute()))
    text = str(source)
    parts = urlsplit(text)
    if "@" in parts.netloc or parts.query:
        # Spark and pyarrow would each read these differently, and the URI is recorded in the
        # manifest: credentials and options belong in the environment or Spark's config.
        shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"  # neither part is shown
        raise DataSpecError(f"{shown}: a source URI carries no user, password or query"
                            " (rule: credentials and options come from the environment, e.g."
                            " AWS_ACCESS_KEY_ID and AWS_ENDPOINT_URL, or Spark's fs.s3a.* settings)")
    scheme = _PYARROW_SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    try:
        fs, path = pafs.FileSystem.from_uri(scheme + text[len(parts.scheme):])
    except (ValueError, OSError) as exc:
        raise DataSpecError(f"{text}: no filesystem for this URI ({exc}) (rule: a local path or an"
                            " s3a://, s3://, gs://, abfs://, hdfs:// or file:// URI)") from None
    return Location(text, fs, path)
