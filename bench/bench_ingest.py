"""Time the KuaiRec ingest on generated data and report its peak memory.

    python bench/bench_ingest.py --preset full      # 12.5M + 4.7M rows; target <= 90 s, <= 6 GB
    python bench/bench_ingest.py --engine spark --preset full          # pandas, then Spark
    python bench/bench_ingest.py --engine spark --preset default --sweep 1,2,4
    python bench/bench_ingest.py --engine spark-only --preset full --sweep 1,2,4   # Spark alone

The raw files are generated once into a cache directory (reused while its synth.json matches
the preset, seed and scale). Generation and each ingest run in a fresh subprocess, so each
peak RSS is that phase's own: ``ru_maxrss`` of the process, and for Spark (local mode: the
driver is this Python process plus the JVM it starts, whose executor threads do the work, and
the JVM's Python workers) the peaks of the Python driver, the JVM and the whole process tree,
sampled every 0.2 s. ``--engine spark`` runs the pandas ingest too, in the same run, so the two
are measured under the same load. ``--sweep`` multiplies the preset's users and rows (big and
small matrix) by each factor: generated data, not copies.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_SECONDS = 90.0
TARGET_RSS_GB = 6.0


def _synth_config(args: argparse.Namespace):
    from grmodel.data.kuairec.synth import SynthConfig

    base = SynthConfig.preset(args.preset, seed=args.seed)
    if args.scale == 1:
        return base
    k = args.scale
    return SynthConfig.preset(args.preset, seed=args.seed, n_users=base.n_users * k,
                              big_rows=base.big_rows * k, small_users=base.small_users * k)


class _TreePeak:
    """Peak RSS of this process, of its java children and of the whole tree, sampled."""

    def __init__(self, every_s: float = 0.2) -> None:
        import psutil

        self.me = psutil.Process()
        self.peaks = {"driver_python": 0, "jvm": 0, "tree": 0}
        self.cpu: dict[int, float] = {}  # pid -> its CPU seconds when last seen
        self.every_s = every_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psutil

        while not self.done.wait(self.every_s):
            try:
                children = self.me.children(recursive=True)
                own = self.me.memory_info().rss
                jvm, tree = 0, own
                for child in children:
                    try:
                        rss = child.memory_info().rss
                        times = child.cpu_times()
                    except psutil.Error:
                        continue
                    self.cpu[child.pid] = times.user + times.system
                    tree += rss
                    if "java" in child.name():
                        jvm += rss
                for key, value in (("driver_python", own), ("jvm", jvm), ("tree", tree)):
                    self.peaks[key] = max(self.peaks[key], value)
            except psutil.Error:
                continue

    def stop(self) -> dict[str, float]:
        """Peaks, and the CPU seconds of the children (JVM, Python workers) as last sampled:
        CPU time per row holds up under other load, where wall time does not."""
        self.done.set()
        self.thread.join()
        return {**{f"peak_{k}_gb": v / 1024**3 for k, v in self.peaks.items()},
                "children_cpu_seconds": sum(self.cpu.values())}


def _phase(args: argparse.Namespace) -> None:
    """Run one phase in this process and print its figures as one JSON line."""
    start = time.perf_counter()
    extra: dict = {}
    if args.phase == "generate":
        from grmodel.data.kuairec.synth import generate_kuairec

        summary = generate_kuairec(args.raw, _synth_config(args))
        rows = summary["rows"]
    elif args.phase == "ingest-spark":
        from grmodel.data.kuairec.ingest import IngestConfig
        from grmodel.data.spark.kuairec import ingest_kuairec_spark
        from grmodel.data.spark.session import spark_session

        peak = _TreePeak()
        spark = spark_session(f"local[{os.cpu_count()}]", driver_memory=args.spark_driver_memory)
        manifest = ingest_kuairec_spark(args.raw, args.out, IngestConfig(seed=args.seed), spark)
        rows = manifest["splits"]["rows"]
        seconds = time.perf_counter() - start
        extra = {**peak.stop(), "spark_driver_memory": args.spark_driver_memory}
        spark.stop()
    else:
        from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec

        manifest = ingest_kuairec(args.raw, args.out, IngestConfig(seed=args.seed))
        rows = manifest["splits"]["rows"]
    seconds = time.perf_counter() - start if args.phase != "ingest-spark" else seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "peak_rss_gb": usage.ru_maxrss / 1024**2,  # ru_maxrss is KiB on Linux
                      "load_average": os.getloadavg()[0], "rows": rows, **extra}))


def _run_phase(phase: str, args: argparse.Namespace, raw: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--preset", args.preset,
               "--seed", str(args.seed), "--raw", str(raw), "--out", str(out),
               "--scale", str(args.scale), "--spark-driver-memory", args.spark_driver_memory]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{phase} failed:\n{result.stderr[-5000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cached(raw: Path, preset: str, seed: int) -> bool:
    record = raw / "synth.json"
    if not record.is_file():
        return False
    config = json.loads(record.read_text())["config"]
    return config["preset_name"] == preset and config["seed"] == seed


def _print(label: str, figures: dict) -> None:
    total = sum(figures["rows"].values())
    memory = f"peak RSS {figures['peak_rss_gb']:.2f} GB"
    if "peak_tree_gb" in figures:
        memory = (f"peak RSS: Python driver {figures['peak_driver_python_gb']:.2f} GB, JVM"
                  f" {figures['peak_jvm_gb']:.2f} GB (heap -Xmx {figures['spark_driver_memory']}),"
                  f" process tree {figures['peak_tree_gb']:.2f} GB")
    cpu = f"{figures['cpu_seconds']:.1f} s CPU (driver process)"
    if "children_cpu_seconds" in figures:
        cpu += f" + {figures['children_cpu_seconds']:.1f} s CPU (JVM and Python workers)"
    print(f"{label} ({total:,} rows: {figures['rows']}): {figures['seconds']:.1f} s wall,"
          f" {cpu}, {memory} on {os.cpu_count()}"
          f" cores (load average at the end {figures['load_average']:.1f}: other work on the"
          " machine slows the wall time)", flush=True)


def _one_scale(args: argparse.Namespace) -> dict[str, dict]:
    suffix = "" if args.scale == 1 else f"-x{args.scale}"
    raw = args.cache / f"kuairec-{args.preset}-seed{args.seed}{suffix}"
    if _cached(raw, args.preset, args.seed):
        print(f"raw data: cached in {raw}")
    else:
        gen = _run_phase("generate", args, raw, raw)
        print(f"generate ({args.preset} x{args.scale}): {gen['rows']} in {gen['seconds']:.1f} s"
              f" wall, {gen['cpu_seconds']:.1f} s CPU, peak RSS {gen['peak_rss_gb']:.2f} GB -> {raw}")
    figures = {}
    phases = {"pandas": ["ingest"], "spark": ["ingest", "ingest-spark"],
              "spark-only": ["ingest-spark"]}[args.engine]
    for phase in phases:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir=args.tmp) as tmp:
            figures[phase] = _run_phase(phase, args, raw, Path(tmp) / "processed")
        engine = "spark, local mode" if phase == "ingest-spark" else "pandas"
        _print(f"ingest [{engine}] ({args.preset} x{args.scale}", figures[phase])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=("tiny", "default", "full"))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--engine", default="pandas", choices=("pandas", "spark", "spark-only"),
                        help="spark: the Spark ingest beside the pandas one, in the same run;"
                             " spark-only: the Spark ingest alone")
    parser.add_argument("--sweep", default=None, metavar="K,K,...",
                        help="scale factors of users and rows (generated), e.g. 1,2,4")
    parser.add_argument("--spark-driver-memory", default="4g")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--cache", type=Path, default=cache_home / "grmodel" / "bench_ingest",
                        help="where the generated raw files are kept between runs")
    parser.add_argument("--tmp", type=Path, default=None, help="where outputs go (then deleted)")
    parser.add_argument("--phase", choices=("generate", "ingest", "ingest-spark"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return

    scales = [int(k) for k in args.sweep.split(",")] if args.sweep else [1]
    results = {}
    for scale in scales:
        args.scale = scale
        results[scale] = _one_scale(args)
    if len(scales) > 1:
        print("sweep (time per row and peak memory against the first scale):")
        first = scales[0]
        for phase in results[first]:
            base = results[first][phase]
            for scale in scales:
                f = results[scale][phase]
                rows = sum(f["rows"].values())
                peak = f.get("peak_tree_gb", f["peak_rss_gb"])
                base_peak = base.get("peak_tree_gb", base["peak_rss_gb"])
                driver = f.get("peak_driver_python_gb", f["peak_rss_gb"])
                cpu = f["cpu_seconds"] + f.get("children_cpu_seconds", 0.0)
                base_cpu = base["cpu_seconds"] + base.get("children_cpu_seconds", 0.0)
                base_rows = sum(base["rows"].values())
                print(f"  {phase:13s} x{scale}: {rows:>11,} rows {f['seconds']:8.1f} s"
                      f" ({1e6 * f['seconds'] / rows:6.2f} us/row), CPU {cpu:8.1f} s"
                      f" ({1e6 * cpu / rows:6.2f} us/row,"
                      f" {(cpu / rows) / (base_cpu / base_rows):4.2f}x the first scale's),"
                      f" peak {peak:5.2f} GB ({peak / base_peak:4.2f}x), driver {driver:5.2f} GB")
    figures = results[scales[0]].get("ingest")
    if args.preset == "full" and scales == [1] and figures:
        ok = figures["seconds"] <= TARGET_SECONDS and figures["peak_rss_gb"] <= TARGET_RSS_GB
        print(f"pandas target <= {TARGET_SECONDS:.0f} s and <= {TARGET_RSS_GB:.0f} GB:"
              f" {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
