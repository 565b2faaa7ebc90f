"""Data versions in real temporary git + DVC repositories with a local DVC remote."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from grmodel import versioning
from grmodel.cli.data import register as register_data_commands
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.versioning import VersioningError


def run(cwd: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def dvc_cli(cwd: Path, *args: str) -> str:
    """The real `dvc` command line, for what users see."""
    return run(cwd, sys.executable, "-m", "dvc", *args)


def new_repo(repo: Path, remote: Path) -> Path:
    """git init + dvc init + a default local remote, committed (`dvc remote add -d`)."""
    repo.mkdir(parents=True)
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.email", "test@example.com")
    run(repo, "git", "config", "user.name", "test")
    Repo.init(str(repo)).close()  # the DVC API: a `dvc` command costs 1-3 s here
    set_remote_url(repo, str(remote), level="repo")
    commit(repo, "dvc init")
    return repo


def set_remote_url(repo: Path, url: str | None, level: str = "local") -> None:
    """`dvc remote add -d local URL` (``level="repo"``: .dvc/config) or, with ``url=None``,
    `dvc remote default --unset`, in .dvc/config.local by default."""
    with Repo(str(repo)) as dvc_repo, dvc_repo.config.edit(level) as conf:
        if url is None:
            conf["core"]["remote"] = ""
        else:
            conf["remote"]["local"] = {"url": url}
            conf["core"]["remote"] = "local"


def commit(repo: Path, message: str) -> str:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)
    return run(repo, "git", "rev-parse", "HEAD").strip()


def clone(origin: Path, to: Path) -> Path:
    run(origin.parent, "git", "clone", "-q", str(origin), str(to))
    return to


def generate(repo: Path, seed: int) -> None:
    generate_kuairec(repo / versioning.DATA_DIR, SynthConfig.preset("tiny", seed=seed))


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose data version 1 (tiny, seed 1) is committed and pushed."""
    base = tmp_path_factory.mktemp("versioning")
    repo = new_repo(base / "origin", base / "remote")
    generate(repo, seed=1)
    versioning.snapshot(repo)
    commit(repo, "data v1")
    return repo


def assert_dvc_status_clean(repo: Path) -> None:
    assert json.loads(dvc_cli(repo, "status", "--json")) == {}
    assert run(repo, "git", "status", "--porcelain") == ""


def test_snapshot_records_the_version_and_generator(origin):
    recorded = versioning.read_version(origin)
    assert recorded.md5 == versioning.current_data_version(origin)
    assert recorded.md5 == versioning.directory_hash(origin / "data")  # DVC's own hash
    assert recorded.generator["name"] == versioning.GENERATOR
    assert recorded.generator["config"]["seed"] == 1
    assert "big_matrix.csv" in recorded.generator["sha256"]
    assert versioning.require_version(origin, recorded.md5) == recorded.md5


def test_the_data_version_is_read_from_data_dvc_and_a_malformed_one_is_named(tmp_path):
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0a1b2c3d4e5f.dir\n  size: 123\n  nfiles: 4\n"
                                       "  path: data\n")
    version = versioning.read_version(tmp_path)
    assert (version.md5, version.nfiles, version.size) == ("0a1b2c3d4e5f.dir", 4, 123)
    (tmp_path / "data.dvc").write_text("outs: []\n")
    with pytest.raises(VersioningError, match=r"not a DVC file with one output \(rule: outs\[0\].md5\)"):
        versioning.read_version(tmp_path)
    with pytest.raises(VersioningError, match="not found; record the first data version"):
        versioning.read_version(tmp_path / "elsewhere")


def test_fresh_clone_pulls_the_recorded_version(origin, tmp_path):
    repo = clone(origin, tmp_path / "clone")
    assert not versioning.workspace_status(repo).exists
    assert versioning.ensure_data(repo) == "pulled"
    assert versioning.require_version(repo) == versioning.current_data_version(origin)
    assert_dvc_status_clean(repo)
    assert versioning.ensure_data(repo) == "present"


def test_fresh_clone_regenerates_when_no_remote_has_it(origin, tmp_path):
    repo = clone(origin, tmp_path / "clone")
    (tmp_path / "empty-remote").mkdir()
    set_remote_url(repo, str(tmp_path / "empty-remote"))
    assert versioning.ensure_data(repo) == "regenerated"
    assert versioning.directory_hash(repo / "data") == versioning.current_data_version(origin)
    assert_dvc_status_clean(repo)  # cached, and data.dvc untouched


def test_two_processes_obtaining_the_data_at_once_both_get_it_intact(origin, tmp_path):
    """Two main jobs started together in a fresh clone without a reachable remote: both
    regenerate into the one data/ (grmodel main's fetch stage), and neither fails or corrupts it."""
    repo = clone(origin, tmp_path / "clone")
    (tmp_path / "empty-remote").mkdir()
    set_remote_url(repo, str(tmp_path / "empty-remote"))
    code = "import sys; from grmodel import versioning; print(versioning.ensure_data(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(repo)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.communicate(timeout=600), p.returncode) for p in procs]
    for (out, err), status in results:
        assert status == 0, err[-2000:]
    # The second waits for the first, then finds the data present (without the wait the two
    # raced: the second pulled what the first had just cached, or, a moment earlier, was
    # refused as a second writer of data/).
    assert sorted(out.strip() for (out, _), _ in results) == ["present", "regenerated"]
    assert versioning.directory_hash(repo / "data") == versioning.current_data_version(origin)
    assert_dvc_status_clean(repo)
    assert not [p.name for p in repo.iterdir() if ".tmp-" in p.name or ".old-" in p.name
                or p.name.endswith(".lock")]


def test_regeneration_that_does_not_hash_to_the_version_fails_loudly(origin, tmp_path):
    repo = clone(origin, tmp_path / "clone")
    set_remote_url(repo, None)
    dvc_file = repo / "data.dvc"
    raw = yaml.safe_load(dvc_file.read_text())
    raw["meta"]["generator"]["config"]["seed"] = 99  # settings that no longer match the hash
    dvc_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    recorded = raw["outs"][0]["md5"]
    with pytest.raises(VersioningError, match=r"regenerated data hashes to \w+\.dir, but") as err:
        versioning.ensure_data(repo)
    assert recorded in str(err.value) and "big_matrix.csv" in str(err.value)
    assert not (repo / "data").exists()  # no half-written data/
    assert sorted(p.name for p in repo.iterdir() if p.name.startswith("data.")) == ["data.dvc"]


def test_workspace_edited_after_dvc_add_is_refused(origin, tmp_path):
    repo = clone(origin, tmp_path / "clone")
    versioning.ensure_data(repo)
    version = versioning.current_data_version(repo)
    with (repo / "data" / "big_matrix.csv").open("a") as handle:
        handle.write("1,2,3000,4000,,,1593878400.0,0.75\n")
    with pytest.raises(VersioningError, match=r"differs from data.dvc .*modified: data/big_matrix"
                       r"\.csv.*grmodel data ensure --force.*grmodel data snapshot"):
        versioning.require_version(repo, version)
    # ensure keeps edits that no version holds, unless told to discard them.
    with pytest.raises(VersioningError, match="changes that no data version records"):
        versioning.ensure_data(repo)
    assert versioning.ensure_data(repo, force=True) == "pulled"
    assert versioning.require_version(repo, version) == version
    with pytest.raises(VersioningError, match=r"records data version \w+\.dir, but 0+\.dir was"):
        versioning.require_version(repo, "0" * 32 + ".dir")


def test_new_versions_and_reading_an_old_one_at_its_git_commit(origin, tmp_path):
    repo = clone(origin, tmp_path / "clone")
    versioning.ensure_data(repo)
    v1, rev1 = versioning.current_data_version(repo), run(repo, "git", "rev-parse", "HEAD").strip()
    generate(repo, seed=2)
    v2 = versioning.snapshot(repo)
    rev2 = commit(repo, "data v2")
    assert v2 != v1 and versioning.read_version(repo).generator["config"]["seed"] == 2
    assert versioning.version_rev(repo, v1) == rev1 and versioning.version_rev(repo, v2) == rev2
    assert versioning.read_version(repo, rev1).md5 == v1

    out = versioning.export_version(repo, v1, tmp_path / "v1")
    assert versioning.directory_hash(out) == v1
    assert versioning.require_version(repo) == v2  # the workspace is left alone

    # Data that is no longer what the generator wrote is recorded without generator settings.
    (repo / "data" / "user_features.csv").write_text(
        (repo / "data" / "user_features.csv").read_text().replace("\n", "\r\n"))
    v3 = versioning.snapshot(repo, push=False)
    assert v3 not in (v1, v2) and versioning.read_version(repo).generator is None
    commit(repo, "data v3")
    assert versioning.export_version(repo, v3, tmp_path / "v3") == tmp_path / "v3"


def test_export_regenerates_a_version_that_no_cache_or_remote_holds(origin, tmp_path):
    repo = clone(origin, tmp_path / "clone")
    set_remote_url(repo, None)
    version = versioning.current_data_version(repo)
    out = versioning.export_version(repo, version, tmp_path / "out")
    assert versioning.directory_hash(out) == version
    assert not (repo / "data").exists()


def test_data_commands(origin, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register_data_commands(parser.add_subparsers(dest="command", required=True))
    repo = str(clone(origin, tmp_path / "clone"))

    def cli(*argv: str) -> str:
        args = parser.parse_args(["data", *argv])
        assert args.handler(args) == 0
        return capsys.readouterr().out

    version = versioning.current_data_version(origin)
    assert cli("version", "--repo", repo).strip() == version
    assert cli("ensure", "--repo", repo).strip() == f"data/ is data version {version} (pulled)"
    assert cli("version", "--check", "--repo", repo).strip() == version
    generate(Path(repo), seed=3)
    with pytest.raises(VersioningError, match="differs from data.dvc"):
        cli("version", "--check", "--repo", repo)
    new = cli("snapshot", "--no-push", "--repo", repo).strip()
    assert new != version and versioning.require_version(repo) == new
