"""Locations of input tables: local paths, file:// URIs and S3 (a moto S3 server on loopback:
the S3 protocol pyarrow speaks to any endpoint, without the cloud), read the same way."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from grmodel.data.io import DataSpecError, sha256_file
from grmodel.data.storage import is_uri, location


def _partitioned(root: Path) -> list[str]:
    """Three day folders of one Parquet file each (written out of order); their paths."""
    names = []
    for day, rows in (("2025-03-02", 3), ("2025-03-01", 2), ("2025-03-03", 4)):
        folder = root / f"day={day}"
        folder.mkdir(parents=True)
        pd.DataFrame({"spend": [float(k) for k in range(rows)]}).to_parquet(folder / "part-0.parquet")
        names.append(f"day={day}/part-0.parquet")
    (root / "_SUCCESS").write_text("")
    return sorted(names)


def test_uris_are_told_from_paths() -> None:
    assert is_uri("s3a://logs/t") and is_uri("file:///tmp/x") and is_uri("gs://b/k")
    assert not is_uri("data/t.parquet") and not is_uri(Path("s3a://x")) and not is_uri("C:x")


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_local_directory_lists_reads_and_hashes(tmp_path: Path, as_uri: bool) -> None:
    names = _partitioned(tmp_path / "t")
    source = location((tmp_path / "t").as_uri() if as_uri else tmp_path / "t")
    assert source.kind() == "directory" and location(tmp_path / "nope").kind() == "missing"
    files = source.files(".parquet")
    assert [f.path for f in files] == [str(tmp_path / "t" / n) for n in names]
    assert files[0].relative_parts(source) == ("day=2025-03-01",) and files[0].kind() == "file"
    assert files[0].spark_file_uri() == (tmp_path / "t" / names[0]).as_uri()
    with files[2].open() as handle:
        assert pq.ParquetFile(handle).metadata.num_rows == 4
    assert files[1].sha256() == sha256_file(tmp_path / "t" / names[1])
    assert str(files[0]).startswith("file:///" if as_uri else str(tmp_path))


def test_credentials_and_options_in_a_uri_are_refused_unshown() -> None:
    for uri in ("s3a://AKIAXXX:hunter2@logs/t", "s3://logs/t?secret_key=hunter2&region=x"):
        with pytest.raises(DataSpecError, match="carries no user, password or query") as caught:
            location(uri)
        assert "hunter2" not in str(caught.value)
    with pytest.raises(DataSpecError, match="no filesystem for this URI"):
        location("nosuch://bucket/t")


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch):
    """A moto S3 server on 127.0.0.1 with a bucket ``logs``; the environment pyarrow (and
    Spark's s3a, in the image) read credentials and the endpoint from."""
    from moto.server import ThreadedMotoServer  # a dev dependency: moto[s3] and flask-cors

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(key, value)
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="logs")
    yield client
    server.stop()


def test_an_s3_prefix_lists_reads_and_hashes_as_a_local_folder(s3, tmp_path: Path) -> None:
    names = _partitioned(tmp_path / "t")
    for path in (tmp_path / "t").rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "logs", f"tables/t/{path.relative_to(tmp_path / 't')}")
    source = location("s3a://logs/tables/t")  # Hadoop's name for S3, as Spark reads it
    assert source.kind() == "directory" and location("s3a://logs/tables/none").kind() == "missing"
    files = source.files(".parquet")
    assert [f.uri for f in files] == [f"s3a://logs/tables/t/{n}" for n in names]
    assert [f.spark_file_uri() for f in files] == [f.uri for f in files]
    assert [f.relative_parts(source) for f in files] == [(n.split("/")[0],) for n in names]
    rows = []
    for f in files:
        with f.open() as handle:
            rows.append(pq.ParquetFile(handle).metadata.num_rows)
    assert rows == [2, 3, 4]
    local = (tmp_path / "t" / names[2]).read_bytes()
    assert files[2].sha256() == hashlib.sha256(local).hexdigest()
