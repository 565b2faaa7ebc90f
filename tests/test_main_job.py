from __future__ import annotations

from grmodel.main_job import MAIN_JOB_MODELS, run_main_job

FAST = ["model.emb_dim=16", "model.encoder_hidden=32", "model.d_model=16", "model.n_heads=2",
        "model.ffn_dim=32", "model.n_layers=1", "train.batch_size=256", "train.epochs=1",
        "train.progress=false", "train.num_threads=1", "head.cread_M=10"]


def test_main_job_runs_every_stage_on_generated_data(tmp_path, capsys):
    report = run_main_job(tmp_path / "work", preset="tiny", seed=3, overrides=FAST, repo=tmp_path)
    work = tmp_path / "work"
    assert (work / "validation" / "raw" / "validation.json").is_file()
    assert (work / "validation" / "processed" / "validation.json").is_file()
    assert (work / "report" / "report.md").is_file()
    assert set(MAIN_JOB_MODELS) <= set(report["summary"])
    assert "oracle (median)" in report["summary"]
    table = capsys.readouterr().out
    assert "| gr |" in table and "| tpm |" in table and "oracle" in table
