"""Submitting and scheduling through kfp.Client. No Kubeflow cluster can run here, so the KFP
API server is a stand-in on loopback that answers the REST calls kfp.Client makes (v2beta1)
and records them; the tests check what a real server would have received."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from grmodel.cli import main
from grmodel.pipeline.params import PipelineParams
from grmodel.pipeline.remote import SubmitError, cluster_params, kfp_cron, load_compiled, schedule, submit


class StandIn(BaseHTTPRequestHandler):
    """Just enough of the KFP v2beta1 API for kfp.Client: healthz, experiments, runs,
    recurring runs. Every request is appended to ``server.requests``."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: dict | None) -> str:
        url = urlparse(self.path)
        self.server.requests.append({"method": self.command, "path": url.path,
                                     "query": parse_qs(url.query), "body": body,
                                     "authorization": self.headers.get("Authorization")})
        return url.path

    def do_GET(self):
        path = self._record(None)
        if path.endswith("/healthz"):
            return self._reply({"multi_user": False})
        if path.endswith("/experiments"):
            found = self.server.experiments
            return self._reply({"experiments": found, "total_size": len(found)})
        return self._reply({})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self._record(body)
        if path.endswith("/experiments"):
            experiment = {"experiment_id": f"exp-{len(self.server.experiments) + 1}", **body}
            self.server.experiments.append(experiment)
            return self._reply(experiment)
        if path.endswith("/recurringruns"):
            return self._reply({"recurring_run_id": "rr-1", **body})
        if path.endswith("/runs"):
            return self._reply({"run_id": "run-1", "state": "PENDING", **body})
        return self._reply({})


@pytest.fixture
def kfp_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.requests, server.experiments = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _posts(server, suffix: str) -> list[dict]:
    return [r for r in server.requests if r["method"] == "POST" and r["path"].endswith(suffix)]


PARAMS = PipelineParams(data_repo="https://git.example.com/grmodel.git", data_version="abc.dir",
                        mlflow_tracking_uri="http://mlflow.example.com")


def test_submit_creates_the_experiment_and_a_run_of_the_compiled_spec(kfp_server):
    server, host = kfp_server
    done = submit(host, PARAMS, experiment="nightly", run_name="r1")
    assert (done.kind, done.id, done.experiment_id) == ("run", "run-1", "exp-1")
    assert _posts(server, "/experiments")[0]["body"]["display_name"] == "nightly"
    run = _posts(server, "/runs")[0]["body"]
    assert run["display_name"] == "r1" and run["experiment_id"] == "exp-1"
    spec, platform = load_compiled()
    assert run["pipeline_spec"] == {"pipeline_spec": spec, "platform_spec": platform}
    assert run["runtime_config"]["parameters"]["data_version"] == "abc.dir"
    assert run["runtime_config"]["parameters"]["baselines"] == ["cread", "tpm"]


def test_schedule_creates_a_recurring_run_with_cron_and_concurrency(kfp_server):
    server, host = kfp_server
    server.experiments.append({"experiment_id": "exp-9", "display_name": "grmodel"})
    done = schedule(host, PARAMS, cron="30 2 * * *", max_concurrency=2)
    assert (done.kind, done.id, done.experiment_id) == ("recurring run", "rr-1", "exp-9")
    assert not _posts(server, "/experiments")  # reused, not created again
    job = _posts(server, "/recurringruns")[0]["body"]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * *"
    assert job["max_concurrency"] == "2" or job["max_concurrency"] == 2
    assert job["no_catchup"] is True and job["mode"] == "ENABLE"
    assert job["runtime_config"]["parameters"]["mlflow_tracking_uri"] == "http://mlflow.example.com"


def test_the_cli_submits_with_params_and_keeps_the_token_out_of_the_spec(kfp_server, monkeypatch, capsys):
    server, host = kfp_server
    monkeypatch.setenv("KFP_TOKEN", "s3cret-token")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.com")
    code = main(["pipeline", "submit", "--host", host, "--param", "data_repo=https://git.example.com/g.git",
                 "--param", "data_version=abc.dir", "--param", 'baselines=["cread","tpm","d2q"]',
                 "--param", "seeds=3"])
    assert code == 0 and "run run-1" in capsys.readouterr().out
    run = _posts(server, "/runs")[0]
    assert run["body"]["runtime_config"]["parameters"]["baselines"] == ["cread", "tpm", "d2q"]
    assert run["body"]["runtime_config"]["parameters"]["seeds"] == 3
    assert run["authorization"] == "Bearer s3cret-token"
    assert "s3cret-token" not in json.dumps(run["body"])


def test_submit_sends_no_credentials_and_compile_writes_none(kfp_server, monkeypatch, tmp_path,
                                                             capsys, caplog):
    """A checkout whose origin carries a token, MLflow's URI a password: the submitted run's
    parameters, every request, the CLI's streams and the compiled YAML hold neither (pods get
    them from the grmodel-credentials Secret)."""
    secret = "FAKESECRET42"
    server, host = kfp_server
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "remote", "add", "origin", f"https://oauth2:{secret}@git.example.com/d.git"],
                   cwd=repo, check=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:{secret}@mlflow.example.com")
    for verbose in ([], ["-v"]):
        assert main([*verbose, "pipeline", "submit", "--host", host, "--repo", str(repo),
                     "--param", "data_version=abc.dir"]) == 0
    streams = capsys.readouterr()
    assert secret not in streams.out + streams.err + caplog.text
    assert "credentials removed from the URL" in caplog.text
    assert secret not in json.dumps(server.requests)
    parameters = _posts(server, "/runs")[0]["body"]["runtime_config"]["parameters"]
    assert parameters["data_repo"] == "https://git.example.com/d.git"
    assert parameters["mlflow_tracking_uri"] == "http://mlflow.example.com"
    assert main(["pipeline", "compile", "--out", str(tmp_path / "p.yaml")]) == 0
    assert secret not in (tmp_path / "p.yaml").read_text()


def test_cluster_params_refuse_what_cannot_run_on_a_cluster(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SubmitError, match="mlflow_tracking_uri is empty"):
        cluster_params(PipelineParams(data_source="generate"), tmp_path)
    with pytest.raises(SubmitError, match="sqlite"):
        cluster_params(PipelineParams(data_source="generate", mlflow_tracking_uri="sqlite:///x.db"), tmp_path)
    with pytest.raises(SubmitError, match="origin"):
        cluster_params(PipelineParams(mlflow_tracking_uri="http://m"), tmp_path)
    for local in (str(tmp_path), "/srv/git/grmodel", "file:///srv/git/grmodel.git"):
        with pytest.raises(SubmitError, match="path on this machine"):
            cluster_params(PipelineParams(mlflow_tracking_uri="http://m", data_repo=local,
                                          data_version="abc.dir"), tmp_path)
    for url in ("https://git.example.com/g.git", "git@git.example.com:team/g.git"):
        cluster_params(PipelineParams(mlflow_tracking_uri="http://m", data_repo=url,
                                      data_version="abc.dir"), tmp_path)


def test_the_cli_refuses_a_local_origin_as_data_repo(tmp_path, monkeypatch, capsys):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "/home/me/grmodel"], check=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.com")
    code = main(["pipeline", "submit", "--host", "http://127.0.0.1:9", "--repo", str(tmp_path),
                 "--param", "data_version=abc.dir"])
    assert code == 1
    assert "data_repo '/home/me/grmodel' is a path on this machine" in capsys.readouterr().err


def test_cron_expressions():
    assert kfp_cron("0 3 * * 1-5") == "0 0 3 * * 1-5"
    assert kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
    for bad in ("daily", "* * *", "0 3 * * * * *", "0 3 * * $(rm)"):
        with pytest.raises(SubmitError, match="cron"):
            kfp_cron(bad)


def test_recurring_runs_pin_no_data_version_and_each_trains_on_the_head(kfp_server, tmp_path,
                                                                         monkeypatch, capsys):
    """`grmodel pipeline schedule` from a checkout whose data.dvc records v1: the recurring run
    the (stand-in) KFP API receives carries no data version. Two runs started from its
    parameters, with a new data version committed between them, fetch and ingest v1, then v2
    (the data repository's git URL is a file:// URL standing in for a git server)."""
    import json as json_

    from dvc.repo import Repo

    from grmodel import versioning
    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
    from grmodel.pipeline.stages.data import fetch_data, ingest, ingest_options

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    def commit_version(seed: int) -> str:
        generate_kuairec(repo / "data", SynthConfig.preset("tiny", seed=seed))
        version = versioning.snapshot(repo)
        git("add", "-A")
        git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", f"data {seed}")
        return version

    repo = tmp_path / "data-repo"
    repo.mkdir()
    git("init", "-q")
    with Repo.init(str(repo)) as dvc, dvc.config.edit("repo") as conf:
        conf["remote"]["local"] = {"url": str(tmp_path / "dvc-remote")}
        conf["core"]["remote"] = "local"
    v1 = commit_version(1)
    server, host = kfp_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.com")
    assert main(["pipeline", "schedule", "--host", host, "--repo", str(repo), "--cron", "0 3 * * *",
                 "--param", "data_repo=https://git.example.com/data.git"]) == 0
    capsys.readouterr()
    job = _posts(server, "/recurringruns")[0]["body"]
    parameters = job["runtime_config"]["parameters"]
    assert parameters["data_version"] == "" and parameters["as_of"] == ""
    spec, _ = load_compiled()
    assert spec["root"]["inputDefinitions"]["parameters"]["data_version"]["defaultValue"] == ""

    def scheduled_run(name: str) -> tuple[str, dict]:
        fetched = fetch_data(tmp_path / name / "raw", source=parameters["data_source"],
                             data_version=parameters["data_version"], data_repo=repo.as_uri(),
                             scheduled_time="2020-09-11T03:00:00Z")
        ingest(tmp_path / name / "raw", tmp_path / name / "processed",
               ingest_options(parameters["split"], parameters["label_mode"]))
        manifest = json_.loads((tmp_path / name / "processed" / "manifest.json").read_text())
        return fetched["data_version"], manifest["sources"]

    first, first_sources = scheduled_run("night-1")
    v2 = commit_version(2)  # the data repository moves between the two nights
    second, second_sources = scheduled_run("night-2")
    assert (first, second) == (v1, v2) and v1 != v2
    assert first_sources["big_matrix.csv"] != second_sources["big_matrix.csv"]


def test_a_pinned_recurring_run_is_kept_and_warned_about(caplog):
    params = cluster_params(PipelineParams(data_repo="https://git.example.com/g.git",
                                           data_version="abc.dir",
                                           mlflow_tracking_uri="http://m"), recurring=True)
    assert params.data_version == "abc.dir" and "every run of the recurring run" in caplog.text
    with pytest.raises(SubmitError, match="logs' object-store URI"):
        cluster_params(PipelineParams(data_source="logs", data_repo="/srv/logs",
                                      mlflow_tracking_uri="http://m"), recurring=True)


def test_a_recurring_run_on_logs_trains_on_each_night_s_window(kfp_server, tmp_path, monkeypatch,
                                                                capsys):
    """A recurring run on day-partitioned logs: the (stand-in) KFP API receives no data version
    and no as_of; two nights started from its parameters with their scheduled times, a new day
    landing between them, resolve two windows, two versions (the shared days hash the same).
    The object-store URI stands in as a local copy of the logs for the fetches."""
    import shutil

    from grmodel.data.kuairec.synth import DaysConfig, SynthConfig, generate_days
    from grmodel.pipeline.stages.data import fetch_data

    server, host = kfp_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.com")
    assert main(["pipeline", "schedule", "--host", host, "--cron", "0 3 * * *",
                 "--param", "data_source=logs", "--param", "data_repo=s3a://bucket/logs",
                 "--param", "window_days=2"]) == 0
    capsys.readouterr()
    parameters = _posts(server, "/recurringruns")[0]["body"]["runtime_config"]["parameters"]
    assert parameters["data_version"] == "" and parameters["as_of"] == ""
    assert (parameters["data_source"], parameters["window_days"]) == ("logs", 2)

    world = tmp_path / "world"
    generate_days(world, SynthConfig.preset("tiny"), DaysConfig(days=4))
    logs = tmp_path / "logs"
    logs.mkdir()
    for day in ("2020-09-06", "2020-09-07", "2020-09-08"):
        shutil.copytree(world / f"date={day}", logs / f"date={day}")

    def night(scheduled: str) -> dict:
        fetched = fetch_data(tmp_path / scheduled / "raw", source=parameters["data_source"],
                             data_version=parameters["data_version"], data_repo=str(logs),
                             as_of=parameters["as_of"], window_days=parameters["window_days"],
                             scheduled_time=scheduled)
        return fetched["record"]

    first = night("2020-09-09T03:00:00Z")
    shutil.copytree(world / "date=2020-09-09", logs / "date=2020-09-09")  # a new day lands
    second = night("2020-09-10T03:00:00Z")
    assert list(first["partitions"]) == ["2020-09-06", "2020-09-07", "2020-09-08"]
    assert list(second["partitions"]) == ["2020-09-07", "2020-09-08", "2020-09-09"]
    assert first["data_version"] != second["data_version"]
    for day in ("2020-09-07", "2020-09-08"):
        assert first["partitions"][day] == second["partitions"][day]
