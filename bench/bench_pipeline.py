"""Time the whole pipeline run locally (the README's main job) and each of its stages.

    python bench/bench_pipeline.py                       # the main job's run; target <= 600 s
    python bench/bench_pipeline.py --preset tiny         # a small run (CI-sized)
    python bench/bench_pipeline.py --baselines cread,tpm,gbdt   # with other baselines

Runs ``grmodel.pipeline.main_job``'s pipeline through kfp.local in a temporary directory (the default
preset and seed are the DVC-recorded data of this checkout). Stage times come from each stage's
``stage.json`` (the work itself; the difference to the wall time is process start-up and
imports); peak RSS is the largest of any stage process (``ru_maxrss`` of the children).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default", help="data preset (tiny, default, full)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--repo", default=".", help="checkout whose data.dvc holds the default data")
    parser.add_argument("--baselines", help="comma-separated baselines instead of the main job's")
    parser.add_argument("overrides", nargs="*", help="extra [MODEL:]key=value config overrides")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")

    from grmodel.pipeline.local import run_local
    from grmodel.pipeline.main_job import main_job_params
    from grmodel.pipeline.stages.record import STAGE_RECORD

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        params = main_job_params(work, args.preset, args.seed, args.overrides, Path(args.repo))
        if args.baselines:
            params = dataclasses.replace(params, baselines=args.baselines.split(","))
        start = time.perf_counter()
        run = run_local(params, work)
        wall = time.perf_counter() - start
        stages = {}
        for record in sorted(run.run_dir.rglob(STAGE_RECORD)):
            raw = json.loads(record.read_text())
            stages[raw["stage"]] = raw["ended"] - raw["started"]
        report = json.loads((run.evaluation_dir / "report.json").read_text())
        rows = report["dataset"]["manifest"]["splits"]["rows"]
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"data: {args.preset} preset, {rows['train']} train / {rows['valid']} valid /"
          f" {rows['test']} test rows; {os.cpu_count()} CPUs; source {params.data_source};"
          f" baselines {','.join(params.baselines)}")
    for name, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<20} {seconds:7.1f} s")
    print(f"stages' own work {sum(stages.values()):.1f} s; wall {wall:.1f} s"
          f" (target <= {TARGET_SECONDS:.0f} s: {'met' if wall <= TARGET_SECONDS else 'MISSED'});"
          f" peak RSS of a stage {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
