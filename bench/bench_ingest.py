"""Time the KuaiRec ingest on generated data and report its peak memory.

    python bench/bench_ingest.py --preset full      # 12.5M + 4.7M rows; target <= 90 s, <= 6 GB

The raw files are generated once into a cache directory (reused while its synth.json matches
the preset and seed). Generation and ingest each run in a fresh subprocess, so each peak RSS
(``ru_maxrss``) is that phase's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 90.0
TARGET_RSS_GB = 6.0


def _phase(args: argparse.Namespace) -> None:
    """Run one phase in this process and print its figures as one JSON line."""
    start = time.perf_counter()
    if args.phase == "generate":
        from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

        summary = generate_kuairec(args.raw, SynthConfig.preset(args.preset, seed=args.seed))
        rows = summary["rows"]
    else:
        from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec

        manifest = ingest_kuairec(args.raw, args.out, IngestConfig(seed=args.seed))
        rows = manifest["splits"]["rows"]
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "peak_rss_gb": usage.ru_maxrss / 1024**2,  # ru_maxrss is KiB on Linux
                      "load_average": os.getloadavg()[0], "rows": rows}))


def _run_phase(phase: str, args: argparse.Namespace, raw: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--preset", args.preset,
               "--seed", str(args.seed), "--raw", str(raw), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{phase} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cached(raw: Path, preset: str, seed: int) -> bool:
    record = raw / "synth.json"
    if not record.is_file():
        return False
    config = json.loads(record.read_text())["config"]
    return config["preset_name"] == preset and config["seed"] == seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=("tiny", "default", "full"))
    parser.add_argument("--seed", type=int, default=2024)
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--cache", type=Path, default=cache_home / "grmodel" / "bench_ingest",
                        help="where the generated raw files are kept between runs")
    parser.add_argument("--phase", choices=("generate", "ingest"), help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return

    raw = args.cache / f"kuairec-{args.preset}-seed{args.seed}"
    if _cached(raw, args.preset, args.seed):
        print(f"raw data: cached in {raw}")
    else:
        gen = _run_phase("generate", args, raw, raw)
        print(f"generate ({args.preset}): {gen['rows']} in {gen['seconds']:.1f} s wall,"
              f" {gen['cpu_seconds']:.1f} s CPU, peak RSS {gen['peak_rss_gb']:.2f} GB -> {raw}")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        figures = _run_phase("ingest", args, raw, Path(tmp) / "processed")
    total = sum(figures["rows"].values())
    print(f"ingest ({args.preset}, {total:,} rows: {figures['rows']}):"
          f" {figures['seconds']:.1f} s wall, {figures['cpu_seconds']:.1f} s CPU, peak RSS"
          f" {figures['peak_rss_gb']:.2f} GB on {os.cpu_count()} cores (load average at the"
          f" end {figures['load_average']:.1f}: other work on the machine slows the wall time)")
    if args.preset == "full":
        ok = figures["seconds"] <= TARGET_SECONDS and figures["peak_rss_gb"] <= TARGET_RSS_GB
        print(f"target <= {TARGET_SECONDS:.0f} s and <= {TARGET_RSS_GB:.0f} GB:"
              f" {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
