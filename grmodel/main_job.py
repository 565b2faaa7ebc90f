"""The README's main job: generated KuaiRec-shaped data → ingest → train → evaluate → table.

Until the Kubeflow pipeline lands this runs the stages in-process; every stage writes its
output atomically under ``workdir`` and is skipped when that output already exists for the
same settings, so a rerun resumes where the last one stopped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from grmodel.config import RunConfig

log = logging.getLogger(__name__)

# Short enough for the main job on 2 CPU cores; the paper's 20 epochs stay the library default.
MAIN_JOB_OVERRIDES = ["train.epochs=4", "train.patience=2"]
MAIN_JOB_MODELS = ("gr", "cread", "tpm")


def run_main_job(
    workdir: Path, preset: str = "default", seed: int = 2024, overrides: list[str] | None = None
) -> dict:
    from grmodel.data.kuairec import IngestConfig, ingest_kuairec
    from grmodel.data.synth import SynthConfig, generate_kuairec
    from grmodel.evaluate import evaluate_models, format_table
    from grmodel.train import train_model

    workdir.mkdir(parents=True, exist_ok=True)
    raw_dir, processed_dir = workdir / "raw", workdir / "processed"
    synth_config = SynthConfig.preset(preset, seed=seed)
    if not raw_dir.exists():
        log.info("[1/4] generating %s KuaiRec-shaped data into %s", preset, raw_dir)
        generate_kuairec(raw_dir, synth_config)
    if not processed_dir.exists():
        log.info("[2/4] ingesting %s", raw_dir)
        ingest_kuairec(raw_dir, processed_dir, IngestConfig(seed=seed))

    model_dirs = {}
    for name in MAIN_JOB_MODELS:
        config = RunConfig(model_name=name).with_overrides(
            [f"data.processed_dir={processed_dir}", f"train.seed={seed}",
             *MAIN_JOB_OVERRIDES, *(overrides or [])]
        )
        model_dir = workdir / "models" / name
        log.info("[3/4] training %s", name)
        train_model(config, model_dir)
        model_dirs[name] = model_dir

    log.info("[4/4] evaluating on the test split")
    results = evaluate_models(processed_dir, model_dirs)
    table = format_table(results)
    report = workdir / "report.md"
    report.write_text(f"# Evaluation ({preset} generated KuaiRec, seed {seed})\n\n{table}\n")
    (workdir / "metrics.json").write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\nreport: {report}\nmodels: {', '.join(str(d) for d in model_dirs.values())}")
    return results
