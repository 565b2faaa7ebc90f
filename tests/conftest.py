"""Shared fixtures: a small processed dataset with planted structure, written in the contract
of grmodel/features.py, so model tests do not depend on the KuaiRec ingest."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_runs import FAST_GR

# pytest-xdist's workers run under execnet, whose __main__ has neither a spec nor a file:
# pyspark's connect module then takes itself for a doctest run and exits the worker when
# great_expectations imports it. Give __main__ a name before anything imports them.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "<pytest-xdist worker>"

from grmodel.features import FORMAT, FeatureSchema, FieldSpec  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# One intra-op thread: small test models gain nothing from more, and OpenMP threads slow down
# by orders of magnitude when CI or other processes load the cores.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip, with the reason, where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    reason = f"no CUDA device (torch {torch.__version__}, {build})"
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason=reason))


def write_planted_dataset(root: Path, n_rows: int = 6000, seed: int = 0) -> Path:
    """Watch time = exp(user taste · item affinity + item bias) × noise, heavy-tailed."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_cats = 60, 80, 6
    taste = rng.normal(0, 1, (n_users, n_cats))
    item_cat = rng.integers(0, n_cats, n_items)
    item_bias = rng.normal(0, 0.5, n_items)
    user = rng.integers(0, n_users, n_rows)
    item = rng.integers(0, n_items, n_rows)
    log_mu = 2.0 + 0.6 * taste[user, item_cat[item]] + item_bias[item]
    label = np.exp(log_mu + rng.normal(0, 0.35, n_rows))
    label[rng.random(n_rows) < 0.03] = 0.0
    frame = pd.DataFrame(
        {
            "user_id": user + 2,
            "item_id": item + 2,
            "item_cat": item_cat[item] + 2,
            "label": np.round(label, 3),
            "duration_s": rng.uniform(5, 60, n_rows),
            "timestamp": np.arange(n_rows, dtype=np.float64),
            "user_id_raw": user,
            "item_id_raw": item,
        }
    )
    schema = FeatureSchema(
        (
            FieldSpec("user_id", "user", n_users + 2),
            FieldSpec("item_id", "item", n_items + 2),
            FieldSpec("item_cat", "item", n_cats + 2),
        )
    )
    root.mkdir(parents=True, exist_ok=True)
    cut1, cut2 = int(0.8 * n_rows), int(0.9 * n_rows)
    splits = {"train": frame[:cut1], "valid": frame[cut1:cut2], "test": frame[cut2:]}
    for name, part in splits.items():
        part.reset_index(drop=True).to_parquet(root / f"{name}.parquet", index=False)
    manifest = {
        "format": FORMAT,
        "features": schema.to_dict(),
        "label": {"mode": "watch_time", "unit": "s"},
        "splits": {k: len(v) for k, v in splits.items()},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def planted_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted_dataset(tmp_path_factory.mktemp("planted") / "processed")


def _gr_config(dataset: Path, *overrides: str):
    from grmodel.config import RunConfig

    return RunConfig().with_overrides([f"data.processed_dir={dataset}", *FAST_GR, *overrides])


@pytest.fixture(scope="session")
def gr_config():
    """``gr_config(dataset, *overrides)``: the small GR's RunConfig (a fixture, because test
    modules cannot import this conftest by name: tests/data has a conftest too)."""
    return _gr_config


@pytest.fixture(scope="session")
def trained_gr(planted_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """GR trained for 8 epochs on the planted dataset (a TrainResult)."""
    from grmodel.training.loop import train_model

    out = tmp_path_factory.mktemp("gr") / "model"
    return train_model(_gr_config(planted_dataset, "train.epochs=8", "train.patience=8"), out)


# The pipeline's tests: tiny generated data, a GR that learns in seconds, 1-epoch baselines.
PIPELINE_OVERRIDES = [*FAST_GR, "train.epochs=3", "train.patience=3", "head.cread_M=10",
                      "cread:train.epochs=1", "tpm:train.epochs=1"]


@pytest.fixture(scope="session")
def pipeline_overrides() -> list[str]:
    return list(PIPELINE_OVERRIDES)


@pytest.fixture(scope="session")
def grouped_dataset(planted_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted dataset with its train split in 700-row Parquet row groups (the last one
    short), for the streaming input, which shards and shuffles by row group."""
    import shutil

    root = tmp_path_factory.mktemp("grouped") / "processed"
    shutil.copytree(planted_dataset, root)
    frame = pd.read_parquet(root / "train.parquet")
    frame.to_parquet(root / "train.parquet", index=False, row_group_size=700)
    return root


# A tiny generated KuaiRec directory and its chronological ingest, made once per session, for
# the validation and command-line tests (tests/data/conftest.py has its own for the data tests).
@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

    raw = tmp_path_factory.mktemp("kuairec") / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny", seed=7))
    return raw


@pytest.fixture(scope="session")
def tiny_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five days of tiny logs, 2020-09-06 .. 2020-09-10 (after KuaiRec's window): the users'
    mix changes from the third day; the labels shift (x1.5) and a new category appears from
    the fourth."""
    from grmodel.data.kuairec.synth import DaysConfig, SynthConfig, generate_days

    logs = tmp_path_factory.mktemp("kuairec") / "logs"
    generate_days(logs, SynthConfig.preset("tiny"),
                  DaysConfig(days=5, mix_day=2, label_shift_day=3, new_category_day=3))
    return logs


@pytest.fixture(scope="session")
def tiny_processed(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec

    out = tmp_path_factory.mktemp("kuairec") / "processed"
    ingest_kuairec(tiny_raw, out, IngestConfig(split="chronological"))
    return out


@pytest.fixture(scope="session")
def failed_checks():
    """``failed_checks(report)``: the (table, check id) of every check a validation report
    failed, what the validation tests compare."""
    return lambda report: {(c.table, c.check_id) for c in report.failures}


@pytest.fixture(scope="session")
def real_side_dir() -> Path:
    """KuaiRec's real side files, user_features.csv and item_categories.csv (their origin and
    licence: tests/data/kuairec/side/README.md)."""
    return Path(__file__).parent / "data" / "kuairec" / "side"


def shop_table(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Ints, strings with missing values and a bucketed number: every kind of encoder."""
    rng = np.random.default_rng(seed)
    country = rng.choice(["fr", "de", "us", None], n, p=[0.3, 0.3, 0.3, 0.1])
    age = rng.normal(35, 10, n)
    age[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "customer_id": rng.integers(0, 150, n),
        "country": country,
        "age": age,
        "first_category": rng.choice([f"cat{i}" for i in range(8)], n),
        "ltv": rng.lognormal(1, 1, n),
        "fold": np.where(np.arange(n) % 10 == 0, "test",
                         np.where(np.arange(n) % 10 == 1, "valid", "train")),
    })


@pytest.fixture(scope="session")
def shop_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tabular dataset (with encoders.json) and a 1-epoch value-regression model on it."""
    import yaml

    from grmodel.config import RunConfig
    from grmodel.data.tabular import build_tabular
    from grmodel.training.loop import train_model

    root = tmp_path_factory.mktemp("shop")
    table = shop_table()
    table.to_parquet(root / "shop.parquet")
    spec = {"name": "shop", "source": "shop.parquet", "label": "ltv",
            "user": {"categorical": ["customer_id", "country"], "numeric": {"age": 5}},
            "item": {"categorical": ["first_category"]},
            "split": {"kind": "column", "column": "fold"}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    build_tabular(root / "spec.yaml", root / "processed")
    config = RunConfig().with_overrides([
        f"data.processed_dir={root / 'processed'}", "model_name=vr", "train.epochs=1",
        "train.progress=false", "train.num_threads=1", "train.batch_size=256",
        "train.on_collapse=warn"])  # a one-epoch VR for input checks, not for quality
    train_model(config, root / "model")
    return {"root": root, "table": table, "processed": root / "processed",
            "model": root / "model"}


# -- days of logs as a scheduled run sees them, for the drift tests ---------------------------------
TIERS = ("bronze", "silver", "gold")


def write_days_dataset(root: Path, seed: int, *, rows_per_day: int = 300, window: int = 7,
                       label_scale: float = 1.0, gold_share: float = 0.2,
                       new_tier_share: float = 0.0, users: int = 200,
                       everywhere: bool = False) -> Path:
    """A processed dataset (real encoders, ``encoders.json``) of one run: a ``window`` of days
    (train, and valid its last day), test the next day, drawn from one world (users with a tier and a taste; a
    heavy-tailed watch time). The planted changes apply to the test day (to every day with
    ``everywhere``): labels x ``label_scale``, the share of rows from gold users, a new tier
    on a share of rows.
    ``seed`` draws the days; the world is the same for every seed. ``users`` > 200 adds users
    whose ids sort in the middle of the vocabulary, so every later id moves."""
    from grmodel.data.encoding import bucket_field, categorical_field
    from grmodel.data.processed import write_processed

    world = np.random.default_rng(12345)
    tier = world.choice(len(TIERS), users, p=[0.5, 0.3, 0.2])
    taste = world.normal(0.0, 0.4, users)
    user_ids = np.arange(users) * 2 if users <= 200 else np.concatenate(
        [np.arange(200) * 2, np.arange(users - 200) * 2 + 1])  # odd ids fall between the even
    rng = np.random.default_rng(seed)
    n_train, n = window * rows_per_day, (window + 1) * rows_per_day
    user = rng.integers(0, users, n)
    test = np.arange(n) >= (0 if everywhere else n_train)  # the rows the plants change
    gold = np.flatnonzero(tier == TIERS.index("gold"))
    others = np.flatnonzero(tier != TIERS.index("gold"))
    if gold_share != 0.2:  # the test day's mix: gold users drawn with this probability
        pick_gold = rng.random(n) < gold_share
        user = np.where(test & pick_gold, rng.choice(gold, n), np.where(
            test & ~pick_gold, rng.choice(others, n), user))
    tiers = np.array(TIERS, dtype=object)[tier[user]]
    tiers[test & (rng.random(n) < new_tier_share)] = "platinum"
    label = np.exp(2.3 + taste[user] + rng.normal(0.0, 0.8, n))
    label[rng.random(n) < 0.03] = 0.0
    label[test] *= label_scale
    price = rng.lognormal(3.0, 0.5, n)
    n_fit = n_train - rows_per_day  # a forward split: valid is the window's last day
    train_rows = np.arange(n) < n_fit
    fields = [
        categorical_field("user_id", "user", user_ids[user], train_rows, optional=False),
        categorical_field("tier", "user", tiers, train_rows),
        bucket_field("price_bucket", "item", price, train_rows, 5),
    ]

    def columns(part: np.ndarray) -> dict[str, np.ndarray]:
        return {"label": label[part], "duration_s": price[part] / 10.0,
                "timestamp": part.astype(np.float64), "user_id_raw": user_ids[user[part]],
                "item_id_raw": np.zeros(len(part), np.int64)}

    split_rows = {"train": np.arange(n_fit), "valid": np.arange(n_fit, n_train),
                  "test": np.arange(n_train, n)}
    write_processed(root, fields, columns, split_rows, {"dataset": f"days-seed{seed}"})
    return root


@pytest.fixture(scope="session")
def days_dataset():
    """``days_dataset(root, seed, **plants)``: :func:`write_days_dataset` (a fixture, as
    ``gr_config`` is)."""
    return write_days_dataset


# -- a real browser for the pages grmodel writes ------------------------------------------------
def _find_chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt when missing (CI runs as root on a fresh
    machine); skipped only where apt cannot install it."""
    import shutil
    import subprocess

    found = _find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is not installed and apt-get (as root) is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr[-3000:]}"
    found = _find_chromium()
    assert found, "apt-get installed chromium, but it is not on PATH"
    return found


# Injected into a copy of the page under test (the page itself has no scripts): what the
# browser laid out, written where --dump-dom shows it.
_MEASURE = """<script>
window.addEventListener("load", () => {
  const d = document.documentElement, r = (x) => Math.round(x);
  d.setAttribute("data-measured", JSON.stringify({
    viewport: window.innerWidth, scrollWidth: d.scrollWidth, scrollHeight: d.scrollHeight,
    images: [...document.images].map((i) => ({loaded: i.complete && i.naturalWidth > 0,
      natural: i.naturalWidth, width: r(i.getBoundingClientRect().width),
      right: r(i.getBoundingClientRect().right)})),
    tables: [...document.querySelectorAll("table")].map((t) => ({
      rows: t.querySelectorAll("tbody tr").length, right: r(t.getBoundingClientRect().right)})),
    flagged: document.querySelectorAll("tr.flagged .flag").length,
    pre_tables: [...document.querySelectorAll("pre")].filter((p) => p.textContent.includes("|---")).length,
    headings: [...document.querySelectorAll("h1, h2")].map((h) => h.textContent),
  }));
});
</script>"""


def render_in_chromium(browser: str, page: Path, out_dir: Path, width: int = 1280) -> dict:
    """Lay ``page`` out in headless Chromium ``width`` px wide: the measurements (images,
    tables, scroll width, headings) and a full-page screenshot, ``out_dir/screenshot.png``."""
    import html.parser
    import subprocess

    out_dir.mkdir(parents=True, exist_ok=True)
    probe = out_dir / "measured.html"
    probe.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", f"--user-data-dir={out_dir / 'profile'}", "--virtual-time-budget=10000"]
    dumped = subprocess.run([*flags, f"--window-size={width},900", "--dump-dom", probe.as_uri()],
                            capture_output=True, text=True, timeout=180)
    assert dumped.returncode == 0, dumped.stderr[-3000:]

    class Root(html.parser.HTMLParser):
        measured = None

        def handle_starttag(self, tag, attrs):
            if tag == "html":
                self.measured = dict(attrs).get("data-measured")

    root = Root()
    root.feed(dumped.stdout)
    assert root.measured, f"the page did not load in Chromium:\n{dumped.stderr[-3000:]}"
    measured = json.loads(root.measured)
    shot = out_dir / "screenshot.png"
    height = min(max(measured["scrollHeight"], 900), 16000)
    done = subprocess.run([*flags, f"--window-size={width},{height}", f"--screenshot={shot}",
                           page.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-3000:]
    measured["screenshot"] = shot
    measured["screenshot_size"] = _png_size(shot)
    return measured


def _png_size(path: Path) -> tuple[int, int]:
    import struct

    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="session")
def browser_render(chromium):
    """``browser_render(page, out_dir, width=1280)``: see :func:`render_in_chromium`."""
    return lambda page, out_dir, width=1280: render_in_chromium(chromium, page, out_dir, width)


# -- servers the tests start (an MLflow tracking server, a model server) ------------------------
class Processes:
    """Start, wait for and stop the servers a test runs on loopback."""

    @staticmethod
    def free_port() -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @staticmethod
    def start(args: list[str], log: Path, **env: str):
        import subprocess
        import sys

        # MLflow launches uvicorn by name: the venv's bin directory must be on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        env = {**os.environ, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true", **env}
        with log.open("w") as out:
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)

    @staticmethod
    def wait_http(proc, url: str, log: Path, timeout: float = 120.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n"
                                   f"{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"{url}: not up after {timeout}s:\n{log.read_text()[-3000:]}")

    @staticmethod
    def stop(proc) -> None:
        import signal
        import subprocess

        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def mlflow_server(self, root: Path):
        """``mlflow server`` on 127.0.0.1 (sqlite backend, artifacts proxied over HTTP), not
        yet waited for: (process, uri, log)."""
        import sys

        port = self.free_port()
        log = root / "server.log"
        proc = self.start([sys.executable, "-m", "mlflow", "server",
                           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                           "--artifacts-destination", str(root / "artifacts"),
                           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], log,
                          MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no background job workers
        return proc, f"http://127.0.0.1:{port}", log


@pytest.fixture(scope="session")
def processes() -> Processes:
    return Processes()


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for every Spark test (starting one costs seconds of JVM time):
    two cores, two shuffle partitions, so the tiny tables stay tiny. A test that asks for it
    skips, saying why, only when pyspark or Java is missing."""
    from grmodel.data.spark.session import missing_requirement

    reason = missing_requirement()
    if reason:
        pytest.skip(f"the Spark engine cannot run here: {reason}")
    from grmodel.data.spark.session import spark_session

    session = spark_session("local[2]", driver_memory="1g", shuffle_partitions=2)
    yield session
    session.stop()


# Two "days" of one shop whose vocabularies differ, for the gate that scores a champion
# through its own encoders. Day 2 adds values in the middle of day 1's sorted vocabularies
# (odd customer ids between the even ones, countries "be" and "es", cat1/cat3/cat5), so every
# later id moves; "day2_same_size" swaps cat2 for cat1: the same vocabulary size, ids shifted;
# "day2_drift" is day 2 with every label x1.5 (a planted label drift).
DAY_VALUES = {
    "day1": {"customers": range(0, 200, 2), "countries": ["de", "fr", "us"],
             "categories": ["cat0", "cat2", "cat4", "cat6"]},
    "day2": {"customers": range(0, 200), "countries": ["be", "de", "es", "fr", "us"],
             "categories": [f"cat{i}" for i in range(7)]},
    "day2_same_size": {"customers": range(0, 200, 2), "countries": ["de", "fr", "us"],
                       "categories": ["cat0", "cat1", "cat4", "cat6"]},
    "day2_drift": {"customers": range(0, 200), "countries": ["be", "de", "es", "fr", "us"],
                   "categories": [f"cat{i}" for i in range(7)], "scale": 1.5},
}


def day_table(day: str, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """One day of the shop: the label grows with the category's number and the country's."""
    values = DAY_VALUES[day]
    rng = np.random.default_rng(seed)
    customers = np.asarray(list(values["customers"]))
    countries, categories = values["countries"], values["categories"]
    customer = rng.choice(customers, n)
    country = rng.choice(countries, n)
    category = rng.choice(categories, n)
    age = rng.normal(35, 10, n)
    number = np.array([int(c.removeprefix("cat")) for c in category])
    level = 1.0 + 0.35 * number + 0.2 * np.array([sorted(DAY_VALUES["day2"]["countries"]).index(c)
                                                  for c in country])
    return pd.DataFrame({
        "customer_id": customer, "country": country, "age": age, "first_category": category,
        "ltv": rng.lognormal(level, 0.3) * values.get("scale", 1.0),
        "fold": np.where(np.arange(n) % 10 == 0, "test",
                         np.where(np.arange(n) % 10 == 1, "valid", "train")),
    })


DAY_SPEC = {"name": "shop", "source": "shop.parquet", "label": "ltv",
            "user": {"categorical": ["customer_id", "country"], "numeric": {"age": 5}},
            "item": {"categorical": ["first_category"]},
            "split": {"kind": "column", "column": "fold"}}


@pytest.fixture(scope="session")
def shop_days(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per day: the source table, its processed dataset and a VR trained on it (3 epochs, a
    model that learned the categories: not collapsed)."""
    import yaml

    from grmodel.config import RunConfig
    from grmodel.data.tabular import build_tabular
    from grmodel.training.loop import train_model

    days = {}
    for i, day in enumerate(DAY_VALUES):
        root = tmp_path_factory.mktemp(day)
        table = day_table(day, seed=i)
        table.to_parquet(root / "shop.parquet")
        (root / "spec.yaml").write_text(yaml.safe_dump(DAY_SPEC))
        build_tabular(root / "spec.yaml", root / "processed")
        config = RunConfig().with_overrides([
            f"data.processed_dir={root / 'processed'}", "model_name=vr", "train.epochs=3",
            "train.progress=false", "train.num_threads=1", "train.batch_size=128"])
        train_model(config, root / "model")
        days[day] = {"root": root, "table": table, "processed": root / "processed",
                     "model": root / "model"}
    return days
