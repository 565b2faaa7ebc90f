"""The program a SparkApplication's driver runs (``mainApplicationFile``,
grmodel/k8s/sparkapplication.py): one data stage with ``engine="spark"``, the same function a
local run calls.

    spark_driver.py ingest --raw DIR --out DIR [--options JSON]
    spark_driver.py build_vocab --processed DIR --out DIR [--overrides JSON]
    spark_driver.py encode_labels --processed DIR --vocabulary DIR --out DIR [--overrides JSON]

Options travel as JSON text. The driver's SparkSession is the one spark-submit configured (the
operator's executors); MLflow tracking stays with the pipeline step that submitted this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grmodel.pipeline.stages.data import ingest
from grmodel.pipeline.stages.labels import build_vocab, encode_labels

STAGES = ("ingest", "build_vocab", "encode_labels")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_driver.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--raw")
    parser.add_argument("--processed")
    parser.add_argument("--vocabulary")
    parser.add_argument("--out", required=True)
    parser.add_argument("--options", default="{}", help="ingest: IngestConfig fields as JSON")
    parser.add_argument("--overrides", default="[]", help="GR config overrides as a JSON list")
    args = parser.parse_args(argv)
    if args.stage == "ingest":
        # --raw is the raw directory; ingest takes the fetched folder that holds it.
        result = ingest(Path(args.raw).parent, args.out, json.loads(args.options), engine="spark")
    elif args.stage == "build_vocab":
        result = build_vocab(args.processed, args.out, json.loads(args.overrides), engine="spark")
    else:
        result = encode_labels(args.processed, args.vocabulary, args.out, json.loads(args.overrides),
                               engine="spark")
    print(json.dumps({"stage": args.stage, "result": result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
