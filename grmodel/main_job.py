"""The README's main job: versioned KuaiRec-shaped data → ingest → train → evaluate → table.

The default dataset is the one ``data.dvc`` records: pulled from the DVC remote, or else
regenerated from the generator settings recorded there and verified against its hash. Other
presets or seeds are generated under ``workdir``. Until the Kubeflow pipeline lands the stages
run in-process; each writes its output atomically.
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


def _recorded_default(repo: Path, preset: str, seed: int) -> dict | None:
    """The generator settings data.dvc records, when they are the ones asked for."""
    if not (repo / "data.dvc").is_file():
        return None
    from grmodel.versioning import read_version

    generator = read_version(repo).generator or {}
    config = generator.get("config", {})
    if config.get("preset_name") == preset and config.get("seed") == seed:
        return config
    return None


def run_main_job(
    workdir: Path,
    preset: str = "default",
    seed: int = 2024,
    overrides: list[str] | None = None,
    repo: Path = Path("."),
) -> dict:
    from grmodel.data.kuairec import IngestConfig, ingest_kuairec
    from grmodel.data.synth import SynthConfig, generate_kuairec
    from grmodel.evaluate import evaluate_models, format_table
    from grmodel.train import train_model

    workdir.mkdir(parents=True, exist_ok=True)
    recorded = _recorded_default(repo, preset, seed)
    if recorded is not None:
        from grmodel.versioning import ensure_data, require_version

        how = ensure_data(repo)
        version = require_version(repo)
        log.info("[1/4] data version %s (%s) in %s", version, how, repo / "data")
        raw_dir = repo / "data"
        processed_dir = workdir / f"processed-{version.removesuffix('.dir')[:12]}"
    else:
        raw_dir, processed_dir = workdir / f"raw-{preset}-{seed}", workdir / f"processed-{preset}-{seed}"
        if not raw_dir.exists():
            log.info("[1/4] generating %s KuaiRec-shaped data into %s", preset, raw_dir)
            generate_kuairec(raw_dir, SynthConfig.preset(preset, seed=seed))
    # Validation is the gate: a failing suite raises before anything downstream is written.
    from grmodel.validation import validate_processed, validate_raw_kuairec

    log.info("[2/4] validating %s, then ingesting it", raw_dir)
    validate_raw_kuairec(raw_dir).gate(workdir / "validation" / "raw")
    if not processed_dir.exists():
        ingest_kuairec(raw_dir, processed_dir, IngestConfig(seed=seed))
    validate_processed(processed_dir).gate(workdir / "validation" / "processed")

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
