"""Generated KuaiRec-shaped processed datasets for the training benchmarks, cached between runs.

The raw files go where ``bench_ingest.py`` keeps them (one generation serves both), the
processed dataset beside them; each is reused while its record matches the preset, the seed
and the ingest options.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grmodel"


def processed_dataset(preset: str, seed: int = 2024, cache: Path | None = None) -> Path:
    """The processed dataset of ``preset`` (generated and ingested on first use)."""
    from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

    cache = cache or cache_home()
    raw = cache / "bench_ingest" / f"kuairec-{preset}-seed{seed}"
    processed = cache / "bench_train" / f"processed-{preset}-seed{seed}"
    record = raw / "synth.json"
    config = json.loads(record.read_text())["config"] if record.is_file() else {}
    if (config.get("preset_name"), config.get("seed")) != (preset, seed):
        start = time.perf_counter()
        generate_kuairec(raw, SynthConfig.preset(preset, seed=seed))
        print(f"generated {preset} raw data in {time.perf_counter() - start:.0f} s -> {raw}")
    ingest = IngestConfig(seed=seed)
    manifest = processed / "manifest.json"
    options = json.loads(manifest.read_text()).get("options") if manifest.is_file() else None
    if options != json.loads(json.dumps(dataclasses.asdict(ingest))):
        start = time.perf_counter()
        ingest_kuairec(raw, processed, ingest)
        print(f"ingested {preset} data in {time.perf_counter() - start:.0f} s -> {processed}")
    return processed
