"""Every component's Python function on tiny generated data, in pipeline order.

Each component is called as KFP calls it (``component.python_func`` with artifact objects
whose paths are local directories). The kfp.local run of every component is the end-to-end
test in tests/pipeline/test_local_run.py, which asserts each task's outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl

from components.build_vocab import build_vocab
from components.check_drift import check_drift
from components.encode_labels import encode_labels
from components.evaluate import evaluate
from components.fetch_data import fetch_data
from components.ingest import ingest
from components.register import register
from components.train import train_baseline, train_gr
from components.validate import validate_processed, validate_raw


def _out(kind, root: Path, name: str):
    return kind(name=name, uri=str(root / name), metadata={})


@pytest.fixture(scope="module")
def chain(tmp_path_factory, pipeline_overrides):
    """Run every component in order; the artifacts by name."""
    root = tmp_path_factory.mktemp("components")
    a = {name: _out(kind, root, name) for name, kind in {
        "raw": dsl.Dataset, "raw_report": dsl.Artifact, "raw_html": dsl.HTML, "raw_checks": dsl.Metrics,
        "processed": dsl.Dataset, "processed_report": dsl.Artifact, "processed_html": dsl.HTML,
        "processed_checks": dsl.Metrics, "vocabulary": dsl.Artifact, "tokens": dsl.Dataset,
        "gr": dsl.Model, "gr_metrics": dsl.Metrics, "cread": dsl.Model, "tpm": dsl.Model,
        "evaluation": dsl.Artifact, "report_md": dsl.Markdown, "report_html": dsl.HTML,
        "metrics": dsl.Metrics, "decision_record": dsl.Artifact, "decision": dsl.Markdown,
        "drift_report": dsl.Artifact, "drift_html": dsl.HTML, "drift": dsl.Metrics}.items()}
    out = {"artifacts": a, "root": root, "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}
    # Every stage logs its run live into the same store the register step nests them under.
    track = {"tracking_uri": out["tracking_uri"], "mlflow_experiment": "components",
             "mlflow_artifact_root": str(root / "mlartifacts")}
    common = {"overrides": pipeline_overrides, "seeds": 1, **track}
    fetched = fetch_data.python_func(source="generate", data_version="", data_repo="",
                                     preset="tiny", data_seed=3, raw=a["raw"],
                                     pipeline_run_id="components-test",
                                     pipeline_name="components", **track)
    assert fetched.as_of == ""  # not a windowed run
    out["version"] = fetched.data_version
    v = out["version"]
    out["raw_summary"] = validate_raw.python_func(data=a["raw"], data_version=v,
                                                  report=a["raw_report"], report_html=a["raw_html"],
                                                  checks=a["raw_checks"], **track)
    ingest.python_func(raw=a["raw"], data_version=v, split="authors", label_mode="watch_time",
                       processed=a["processed"], **track)
    validate_processed.python_func(data=a["processed"], data_version=v,
                                   report=a["processed_report"], report_html=a["processed_html"],
                                   checks=a["processed_checks"], **track)
    out["drift_summary"] = check_drift.python_func(
        processed=a["processed"], data_version=v, model_name="components-gr", drift_policy="warn",
        drift_max_kl=0.05, drift_quantile_tolerance=0.1, drift_max_unseen=0.5,
        drift_false_alarm=0.01, report=a["drift_report"], report_html=a["drift_html"],
        drift=a["drift"], **track)
    build_vocab.python_func(processed=a["processed"], data_version=v, overrides=pipeline_overrides,
                            vocabulary=a["vocabulary"], **track)
    encode_labels.python_func(processed=a["processed"], vocabulary=a["vocabulary"], data_version=v,
                              overrides=pipeline_overrides, tokens=a["tokens"], **track)
    train_gr.python_func(processed=a["processed"], vocabulary=a["vocabulary"], tokens=a["tokens"],
                         data_version=v, train_replicas=1, train_pvc="", model=a["gr"],
                         metrics=a["gr_metrics"], **common)
    for name in ("cread", "tpm"):
        train_baseline.python_func(processed=a["processed"], baseline=name, model=a[name],
                                   **common)
    out["table"] = evaluate.python_func(
        processed=a["processed"], gr_model=a["gr"], baseline_models=[a["cread"], a["tpm"]],
        data_version=v, evaluation=a["evaluation"], report_md=a["report_md"],
        report_html=a["report_html"], metrics=a["metrics"], **common)
    out["verdict"] = register.python_func(
        raw=a["raw"], raw_validation=a["raw_report"], processed=a["processed"],
        processed_validation=a["processed_report"], drift_report=a["drift_report"],
        vocabulary=a["vocabulary"], tokens=a["tokens"], gr_model=a["gr"],
        baseline_models=[a["cread"], a["tpm"]], evaluation=a["evaluation"],
        data_version=v, pipeline_run_id="components-test", pipeline_name="components",
        model_name="components-gr", min_mae_rel_improvement=0.01, max_xauc_drop=0.005,
        require_beats_baselines=[], max_champion_decay=0.2,
        decision_record=a["decision_record"], decision=a["decision"],
        **track)
    return out


def test_fetch_data_writes_the_version_it_returns(chain):
    from grmodel.versioning import directory_hash

    raw = Path(chain["artifacts"]["raw"].path) / "raw"
    assert chain["version"] == directory_hash(raw)
    assert chain["artifacts"]["raw"].metadata["data_version"] == chain["version"]
    for name in ("gr", "cread", "tpm"):  # the baselines read it from the dataset's metadata
        assert chain["artifacts"][name].metadata["data_version"] == chain["version"]
    assert {"small_matrix.csv", "big_matrix.csv", "user_features.csv"} <= {p.name for p in raw.iterdir()}


def test_check_drift_without_a_champion_has_no_reference(chain):
    a = chain["artifacts"]
    assert "no reference" in chain["drift_summary"]
    assert (Path(a["drift_report"].path) / "drift.json").is_file()
    assert Path(a["drift_html"].path).read_text().lower().startswith("<!doctype html")


def test_validate_leaves_reports_and_counts(chain):
    a = chain["artifacts"]
    assert "passed: 0 failed" in chain["raw_summary"]
    for kind in ("raw", "processed"):
        assert (Path(a[f"{kind}_report"].path) / "validation.json").is_file()
        assert Path(a[f"{kind}_html"].path).read_text().lower().startswith("<!doctype html")
        assert a[f"{kind}_checks"].metadata[f"{kind}_checks_failed"] == 0
        assert a[f"{kind}_checks"].metadata[f"{kind}_checks_passed"] > 10


def test_ingest_vocab_and_tokens(chain):
    a = chain["artifacts"]
    assert a["processed"].metadata["train_rows"] > 1000
    assert a["vocabulary"].metadata["vocab_size"] > 4
    tokens = a["tokens"].metadata
    assert tokens["rows"] == a["processed"].metadata["train_rows"]
    assert 1.0 <= tokens["mean_length"] <= a["vocabulary"].metadata["max_decode_len"]


def test_training_components_write_one_model_per_seed(chain):
    a = chain["artifacts"]
    for name in ("gr", "cread", "tpm"):
        assert (Path(a[name].path) / "seed2024" / "model.pt").is_file()
        assert a[name].metadata["row"] == name
    assert a["gr_metrics"].metadata["gr.seed2024.best_valid_mae"] > 0


def test_evaluate_scores_gr_above_the_median(chain):
    """A real quality margin: a GR that did not learn ranks like the median (XAUC 0.5)."""
    metrics = chain["artifacts"]["metrics"].metadata
    assert metrics["train_median.xauc"] == pytest.approx(0.5, abs=0.01)
    assert metrics["gr.xauc"] > 0.6
    assert metrics["gr.mae"] < 1.5 * metrics["train_median.mae"]
    assert {"gr.mae", "cread.mae", "tpm.mae", "oracle_median.mae"} <= set(metrics)
    assert "| gr |" in chain["table"]
    assert Path(chain["artifacts"]["report_md"].path).read_text().startswith("#")
    assert "data:image/png;base64," in Path(chain["artifacts"]["report_html"].path).read_text()


def test_register_promotes_the_first_version(chain):
    from grmodel import registry

    assert chain["verdict"] == "components-gr v1: promoted"
    assert registry.alias_version("components-gr", registry.CHAMPION, chain["tracking_uri"]) == "1"
    decision = json.loads((Path(chain["artifacts"]["decision_record"].path) / "decision.json").read_text())
    assert decision["verdict"] == "promoted" and decision["champion_version"] is None
    assert "promoted" in Path(chain["artifacts"]["decision"].path).read_text()


def test_registering_the_same_pipeline_run_again_adds_no_version(chain, tmp_path):
    """A retried register step: same version, same decision, no duplicate stage runs."""
    from mlflow import MlflowClient

    from grmodel.pipeline.publish import TrackingTarget, track_and_register
    from grmodel.registry import PromotionPolicy

    a, uri = chain["artifacts"], chain["tracking_uri"]
    stage_dirs = [a[n].path for n in ("raw", "raw_report", "processed", "processed_report",
                                      "vocabulary", "tokens", "gr", "cread", "tpm", "evaluation")]
    client = MlflowClient(uri)
    runs_before = len(client.search_runs([client.get_experiment_by_name("components").experiment_id]))
    record = track_and_register(
        TrackingTarget(uri, "components-test", "components", str(chain["root"] / "mlartifacts")),
        data_version=chain["version"], stage_dirs=stage_dirs, processed=a["processed"].path,
        gr_model_dir=a["gr"].path, evaluation_dir=a["evaluation"].path, model_name="components-gr",
        policy=PromotionPolicy(require_beats_baselines=()), out_dir=tmp_path / "decision")
    assert record["challenger_version"] == "1" and record["verdict"] == "promoted"
    assert len(client.search_model_versions("name = 'components-gr'")) == 1
    runs_after = client.search_runs([client.get_experiment_by_name("components").experiment_id])
    assert len(runs_after) == runs_before + 1  # only the new register stage run
