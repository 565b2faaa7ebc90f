"""Day two in the registry (a sqlite MLflow store): the champion of day 1 is judged on day 2's
test rows through its own encoders, its decay since promotion is recorded, a re-decision on
new inputs is a new decision, every alias move is recorded and a rollback moves the champion
back; the registry answers by (name, run, logged model)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grmodel import cli, registry, tracking
from grmodel.config import EvalConfig
from grmodel.evaluate import OWN_ENCODERS
from grmodel.features import label_array, read_split
from grmodel.metrics import evaluate_predictions

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

NAME = "shop-ltv"
POLICY = registry.PromotionPolicy(require_beats_baselines=())


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("registry-days")
    return {"uri": f"sqlite:///{root / 'mlflow.db'}", "artifacts": root / "artifacts"}


def publish(store: dict, day: dict, pipeline_run_id: str, names: tuple[str, ...] = ("vr",)
            ) -> str:
    """A run that logs the day's model (under each of ``names``); its run id."""
    uri = store["uri"]
    with tracking.pipeline_run(uri, pipeline_run_id=pipeline_run_id, data_version=pipeline_run_id,
                               artifact_root=store["artifacts"]) as parent, \
            tracking.stage_run(uri, parent, "register") as run_id:
        for name in names:
            registry.log_model(day["model"], day["processed"], name=name)
    return run_id


@pytest.fixture(scope="module")
def days(store: dict, shop_days: dict) -> dict:
    """v1 (day 1) judged on day 1 and promoted; v2 (day 2) judged on day 2 against it."""
    uri = store["uri"]
    runs = {day: publish(store, shop_days[day], day) for day in ("day1", "day2")}
    v1 = registry.register_model(NAME, runs["day1"], "vr", uri).version
    first = registry.gate(NAME, v1, shop_days["day1"]["processed"], policy=POLICY, tracking_uri=uri)
    v2 = registry.register_model(NAME, runs["day2"], "vr", uri).version
    second = registry.gate(NAME, v2, shop_days["day2"]["processed"], policy=POLICY,
                           tracking_uri=uri)
    return {"runs": runs, "first": first, "second": second, "data": shop_days}


def _cli(*argv: str) -> int:
    return cli.main(list(argv))


def test_the_champion_is_scored_through_its_own_encoders(days: dict, store: dict, tmp_path: Path,
                                                         monkeypatch, capsys) -> None:
    """The headline: day 2 adds values in the middle of day 1's vocabularies; the gate does
    not crash, and the champion's metrics are those of `grmodel predict --raw-ids` on day 2's
    raw test rows with the registered champion."""
    first, second = days["first"], days["second"]
    assert first.promoted and first.scored_on == {"challenger": "dataset ids"}
    assert second.champion_version == "1"
    assert second.scored_on == {"challenger": "dataset ids", "champion": OWN_ENCODERS}
    day2 = days["data"]["day2"]
    raw = day2["table"][day2["table"]["fold"] == "test"].reset_index(drop=True)
    raw.to_parquet(tmp_path / "raw.parquet")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    assert _cli("predict", "--model", f"models:/{NAME}/1", "--input", str(tmp_path / "raw.parquet"),
                "--output", str(tmp_path / "scored.parquet"), "--raw-ids") == 0
    capsys.readouterr()
    predictions = pd.read_parquet(tmp_path / "scored.parquet")["prediction"].to_numpy()
    labels = label_array(read_split(day2["processed"], "test"))
    expected = evaluate_predictions(labels, predictions, EvalConfig())
    assert second.metrics["champion"]["mae"] == pytest.approx(expected["mae"], rel=1e-9)
    assert second.metrics["champion"]["xauc"] == pytest.approx(expected["xauc"], rel=1e-9)


def test_the_champions_decay_is_recorded_and_flagged(days: dict, store: dict) -> None:
    first, second = days["first"], days["second"]
    decay = second.champion_decay
    assert first.champion_decay is None  # no champion on day 1
    assert decay["version"] == "1" and decay["promoted_at"] == first.decided_at
    assert decay["mae_at_promotion"] == first.metrics["challenger"]["mae"]
    assert decay["mae"] == second.metrics["champion"]["mae"]
    assert decay["decay"] == pytest.approx(decay["mae"] / decay["mae_at_promotion"] - 1)
    assert decay["flagged"] == (decay["decay"] > POLICY.max_champion_decay)
    # A day whose labels drifted x1.5: the champion (v2, day 2's) is far off its promotion MAE,
    # flagged whatever the verdict (here a rejection: the policy asks a 90% gain).
    uri = store["uri"]
    drift = days["data"]["day2_drift"]
    version = registry.register_model(NAME, publish(store, drift, "day2-drift"), "vr", uri).version
    strict = registry.PromotionPolicy(min_mae_rel_improvement=0.9, require_beats_baselines=())
    decision = registry.gate(NAME, version, drift["processed"], policy=strict, tracking_uri=uri)
    assert not decision.promoted and decision.champion_version == "2"
    decayed = decision.champion_decay
    assert decayed["mae_at_promotion"] == second.metrics["challenger"]["mae"]
    assert decayed["decay"] > strict.max_champion_decay and decayed["flagged"]
    assert "DECAYED beyond 20%" in registry.decay_line(decision)
    assert "FLAGGED" in registry.format_history([decision])


def test_a_redecision_on_new_inputs_is_a_new_decision(days: dict, store: dict) -> None:
    uri, day2 = store["uri"], days["data"]["day2"]
    run = publish(store, days["data"]["day2_same_size"], "day2-same-size")
    version = registry.register_model(NAME, run, "vr", uri).version
    data = days["data"]["day2_same_size"]["processed"]
    strict = registry.PromotionPolicy(min_mae_rel_improvement=0.9, require_beats_baselines=())
    first = registry.gate(NAME, version, data, policy=strict, tracking_uri=uri)
    assert first.number == 1 and not first.promoted
    # Same inputs: the recorded decision comes back.
    assert registry.gate(NAME, version, data, policy=strict, tracking_uri=uri).to_json() == \
        first.to_json()
    # New inputs (another day's test rows, another policy): decision 2, recorded beside 1.
    again = registry.gate(NAME, version, day2["processed"], policy=strict, tracking_uri=uri)
    assert again.number == 2 and again.inputs != first.inputs
    tags = tracking.connect(uri).get_model_version(NAME, version).tags
    assert tags[registry.DECISIONS_TAG] == "2"
    assert registry.Decision.from_json(tags[f"{registry.DECISION_TAG}.1"]).inputs == first.inputs
    numbers = [d.number for d in registry.history(NAME, uri) if d.challenger_version == str(version)]
    assert numbers == [1, 2]


def test_rollback_moves_the_champion_back_and_history_shows_who_and_why(
        days: dict, store: dict, capsys) -> None:
    uri = store["uri"]
    assert days["second"].promoted  # v2, trained on day 2, beats the day-1 champion there
    assert registry.alias_version(NAME, registry.CHAMPION, uri) == "2"
    # Refused: no reason, the current champion, a version that never was champion.
    assert _cli("registry", "rollback", NAME, "--to", "1", "--reason", " ", "--tracking-uri", uri) == 1
    assert "rule: a rollback says why" in capsys.readouterr().err
    assert _cli("registry", "rollback", NAME, "--to", "2", "--reason", "x", "--tracking-uri", uri) == 1
    assert "is the champion already" in capsys.readouterr().err
    assert _cli("registry", "rollback", NAME, "--to", "4", "--reason", "x", "--tracking-uri", uri) == 1
    assert "was never the champion" in capsys.readouterr().err
    assert registry.alias_version(NAME, registry.CHAMPION, uri) == "2"

    assert _cli("registry", "rollback", NAME, "--to", "1", "--reason", "v2 mis-scores new users",
                "--tracking-uri", uri) == 0
    assert "champion v2 → v1" in capsys.readouterr().out
    assert registry.alias_version(NAME, registry.CHAMPION, uri) == "1"
    moves = registry.alias_moves(NAME, uri)
    champion_moves = [(m.from_version, m.to_version, m.how) for m in moves if m.alias == "champion"]
    assert champion_moves == [(None, "1", "gate"), ("1", "2", "gate"), ("2", "1", "rollback")]
    last = moves[-1]
    assert last.reason == "v2 mis-scores new users" and last.by == registry.promotion.actor()
    assert [(m.to_version, m.how) for m in moves if m.alias == "challenger"][:2] == [
        ("1", "register"), ("2", "register")]

    assert _cli("registry", "history", NAME, "--tracking-uri", uri) == 0
    out = capsys.readouterr().out
    assert "| champion | v2 → v1 | rollback |" in out and "v2 mis-scores new users" in out
    assert "current champion: v1" in out
    record = json.loads(_history_json(uri, capsys))
    assert record["champion"] == "1" and record["alias_moves"][-1]["how"] == "rollback"


def _history_json(uri: str, capsys) -> str:
    assert _cli("registry", "history", NAME, "--json", "--tracking-uri", uri) == 0
    return capsys.readouterr().out


def test_unjudged_challengers_are_listed_as_such(days: dict, store: dict, capsys) -> None:
    uri = store["uri"]
    run = publish(store, days["data"]["day2"], "never-judged")
    version = str(registry.register_model(NAME, run, "vr", uri).version)
    unjudged = registry.unjudged_versions(NAME, uri)
    assert [u["version"] for u in unjudged] == [version]
    assert unjudged[0]["aliases"] == ["challenger"]
    assert _cli("registry", "history", NAME, "--tracking-uri", uri) == 0
    assert f"| {version} | unjudged (alias challenger) |" in capsys.readouterr().out


def test_registration_is_by_name_run_and_logged_model(days: dict, store: dict) -> None:
    uri = store["uri"]
    # v1's run logged "vr" only: another name is refused, never answered with v1.
    with pytest.raises(ValueError, match="no logged model named 'tpm'"):
        registry.register_model(NAME, days["runs"]["day1"], "tpm", uri)
    assert str(registry.register_model(NAME, days["runs"]["day1"], "vr", uri).version) == "1"
    # Two models of one run: two versions; each registered again gives its own back.
    run = publish(store, days["data"]["day1"], "two-models", names=("vr", "other"))
    first = registry.register_model(NAME, run, "vr", uri).version
    second = registry.register_model(NAME, run, "other", uri).version
    assert first != second
    assert registry.register_model(NAME, run, "other", uri).version == second
    assert registry.register_model(NAME, run, "vr", uri).version == first
    tags = tracking.connect(uri).get_model_version(NAME, second).tags
    assert tags[registry.ARTIFACT_TAG] == "other"


def test_promote_answers_exactly(days: dict, store: dict, tmp_path: Path, capsys) -> None:
    uri, data = store["uri"], str(days["data"]["day2"]["processed"])
    champion = registry.alias_version(NAME, registry.CHAMPION, uri)
    # A rejection exits 1, as the README's table says of a failed gate.
    assert _cli("registry", "promote", NAME, "--version", "3", "--data", data,
                "--min-mae-improvement", "0.9", "--baselines", "", "--tracking-uri", uri) == 1
    assert "rejected" in capsys.readouterr().out
    # Bad inputs are refused before anything is judged or recorded.
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"mae": 1.0, "xauc": 0.5}]))
    nan_metric = tmp_path / "nan.json"
    nan_metric.write_text('{"cread": {"mae": NaN, "xauc": 0.5}}')
    cases = {
        ("--metrics", str(listed)): "a JSON list, not an object",
        ("--metrics", str(nan_metric)): "cread.mae is nan, not a finite number",
        ("--max-xauc-drop", "nan"): "max_xauc_drop=nan: must be a finite number",
        ("--min-mae-improvement", "-0.1"): "min_mae_rel_improvement=-0.1: must be a finite",
        ("--max-champion-decay", "inf"): "max_champion_decay=inf: must be a finite number",
    }
    tags_before = tracking.connect(uri).get_model_version(NAME, "4").tags
    for extra, message in cases.items():
        assert _cli("registry", "promote", NAME, "--version", "4", "--data", data, *extra,
                    "--tracking-uri", uri) == 1
        assert message in capsys.readouterr().err
    assert tracking.connect(uri).get_model_version(NAME, "4").tags == tags_before
    assert registry.alias_version(NAME, registry.CHAMPION, uri) == champion


def test_decide_leaves_a_collapsed_baseline_out_with_the_reason() -> None:
    policy = registry.PromotionPolicy(require_beats_baselines=("cread", "tpm"))
    challenger = {"mae": 5.0, "xauc": 0.70}
    baselines = {"cread": {"mae": 5.5, "xauc": 0.69},
                 "tpm": {"mae": 4.0, "xauc": 0.50, "collapsed": 1.0,
                         "collapsed_because": "seed 2024: near-constant predictions"}}
    checks = registry.decide(policy, challenger, None, baselines)
    skipped = [c for c in checks if c.get("skipped")]
    assert [(c["check"], c["baseline"]) for c in skipped] == [("mae < tpm", "tpm")]
    assert skipped[0]["passed"] and skipped[0]["detail"].startswith(
        "left out: baseline 'tpm' collapsed (seed 2024: near-constant predictions), so it is no"
        " bar to beat")
    assert all(c["passed"] for c in checks)
    # Not collapsed, the same tpm would be a bar the challenger misses.
    baselines["tpm"].pop("collapsed")
    assert not all(c["passed"] for c in registry.decide(policy, challenger, None, baselines))


def test_thresholds_are_finite_numbers_in_range() -> None:
    for bad in ({"max_xauc_drop": float("nan")}, {"max_xauc_drop": -1.0},
                {"min_mae_rel_improvement": 1.0}, {"max_champion_decay": float("inf")},
                {"require_beats_baselines": "cread"}):
        with pytest.raises(ValueError, match="rule:"):
            registry.PromotionPolicy(**bad)
    assert np.isfinite(registry.PromotionPolicy().max_champion_decay)
