"""``grmodel experiment table1 | table3 | table4``: the paper's tables and figures on our data;
``grmodel experiment robustness``: GR and its baselines on generated data of other label shapes;
``grmodel experiment floors``: how close to the oracle a model can get on a generated dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from grmodel.cli import seed_number, whole_number
from grmodel.comparison.report import results_table
from grmodel.config import load_config
from grmodel.data.windows import MIN_WINDOW_DAYS
from grmodel.experiments.floors import floors_json, floors_markdown, learnable_floors
from grmodel.experiments.robustness import (
    DEFAULT_ROWS,
    MARKDOWN_FILE,
    PRESETS,
    check_request,
    run_robustness,
)
from grmodel.experiments.runner import run_experiment
from grmodel.experiments.specs import EXPERIMENTS
from grmodel.outputs import (
    FOREIGN_RULE,
    OutputError,
    claim_directory,
    foreign_files,
    output_lock,
)
from grmodel.training.tuning import TuningBudget


def register(subparsers: argparse._SubParsersAction) -> None:
    experiment = subparsers.add_parser(
        "experiment",
        help="train, evaluate and report one of the paper's tables or the robustness suite",
        description="Every (row, seed) trains into OUT/runs/ROW/seedK (finished identical runs are"
        " reused), then all are scored on the test split and OUT/report.md, OUT/report.json and"
        " OUT/figures/*.png are written.",
    )
    # One sub-command per table, so that overrides may follow the options.
    names = experiment.add_subparsers(dest="experiment", required=True, metavar="NAME")
    for name, spec in EXPERIMENTS.items():
        _add_experiment(names.add_parser(name, help=spec.title, description=spec.title), name)
    _add_robustness(names)
    _add_floors(names)
    _add_days(names)


def _add_experiment(p: argparse.ArgumentParser, name: str) -> None:
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="processed dataset directory")
    data.add_argument("--generate", metavar="PRESET",
                      help="generate and ingest this synth preset (tiny, default, full) into OUT/data")
    p.add_argument("--data-seed", type=seed_number, default=2024, help="seed of --generate (default 2024)")
    p.add_argument("--out", required=True, help="experiment directory (runs, reports, figures)")
    p.add_argument("--seeds", type=whole_number(1, what="--seeds"), default=1,
                   help="training seeds per row, counting up from train.seed (default 1)")
    p.add_argument("--rows", "--models", dest="rows", default=None,
                   help=f"comma-separated rows to run, default all: {', '.join(EXPERIMENTS[name].row_names)}")
    p.add_argument("--config", default=None, help="JSON or YAML base config for every row")
    p.add_argument("--figure-rows", type=whole_number(1, what="--figure-rows"), default=20_000,
                   help="test rows sampled for the distribution and generated-token figures")
    _add_tuning(p)
    p.add_argument("overrides", nargs="*", metavar="[ROW_OR_MODEL:]KEY=VALUE",
                   help="config overrides for every row (train.epochs=4), one model"
                   " (tpm:head.tpm_w_var=0.1) or one row (manual:train.lr=1e-3)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing directory that grmodel wrote for another purpose")
    p.set_defaults(handler=_experiment)


def _experiment(args: argparse.Namespace) -> int:
    # An experiment directory is continued: its finished identical runs are reused.
    claim_directory(args.out, inputs=[args.data, args.config], overwrite=args.overwrite,
                    reuse=True)
    rows = _split(args.rows)
    report = run_experiment(
        args.experiment,
        args.out,
        args.data,
        generate=args.generate,
        data_seed=args.data_seed,
        seeds=args.seeds,
        rows=rows,
        base_config=load_config(args.config),
        overrides=args.overrides,
        figure_rows=args.figure_rows,
        tune=_budget(args),
    )
    print(results_table(report))
    print(f"\nreport: {args.out}/report.md ({report['wall_seconds']:.1f} s)")
    return 0


def _add_robustness(names: argparse._SubParsersAction) -> None:
    title = ("GR, the GBDT, CREAD, TPM and D2Q on generated datasets of distinct label shapes"
             " (one table)")
    p = names.add_parser("robustness", help=title, description=title + ": each dataset is"
                         " generated and ingested into OUT/data, trained as a table1 experiment"
                         " in OUT/DATASET (finished runs are reused), and OUT/robustness.md and"
                         " OUT/robustness.json gather them (docs/robustness.md).")
    p.add_argument("--out", required=True, help="suite directory (data, per-dataset experiments,"
                   " the table)")
    p.add_argument("--preset", default="default", choices=PRESETS,
                   help="dataset sizes: tiny (seconds) or default (~60-100k rows each)")
    p.add_argument("--seeds", type=whole_number(1, what="--seeds"), default=1,
                   help="training seeds per row (default 1)")
    p.add_argument("--datasets", default=None, help="comma-separated datasets by name or letter,"
                   " default all: a=kuairec_default, b=customer_value, c=rewatch, d=session_ms,"
                   " e=completion, f=drifting_zeros")
    p.add_argument("--rows", "--models", dest="rows", default=None,
                   help=f"comma-separated models, default {','.join(DEFAULT_ROWS)} (d2q only where"
                   " the data has durations)")
    p.add_argument("--data-seed", type=seed_number, default=2024, help="seed of the generators")
    p.add_argument("--config", default=None, help="JSON or YAML base config for every row")
    p.add_argument("--figure-rows", type=whole_number(1, what="--figure-rows"), default=20_000,
                   help="test rows sampled for each dataset's figures")
    _add_tuning(p)
    p.add_argument("overrides", nargs="*", metavar="[MODEL:]KEY=VALUE",
                   help="config overrides for every run (train.epochs=2) or one model")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing directory that grmodel wrote for another purpose")
    p.set_defaults(handler=_robustness)


def _add_tuning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tune", action="store_true",
                   help="first give every model the same tuning budget on the validation split"
                   " (its grid in grmodel/training/tuning.py, each candidate --tune-epochs epochs on at"
                   " most --tune-rows training rows); the report records every trial")
    p.add_argument("--tune-epochs", type=whole_number(1, what="--tune-epochs"), default=1,
                   help="epochs per tuning candidate")
    p.add_argument("--tune-rows", type=whole_number(1, what="--tune-rows"), default=50_000,
                   help="training rows per tuning candidate (default 50,000)")


def _budget(args: argparse.Namespace) -> TuningBudget | None:
    return TuningBudget(args.tune_epochs, args.tune_rows) if args.tune else None


def _split(text: str | None) -> list[str] | None:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


def _add_floors(names: argparse._SubParsersAction) -> None:
    title = "how close to the oracle a model trained on this data can get (a ladder of floors)"
    p = names.add_parser("floors", help=title, description=title + ": on a dataset made by"
                         " `grmodel data synth` and `grmodel data ingest`, the test MAE of"
                         " predictors that know the planted law less and less well"
                         " (grmodel/experiments/floors.py).")
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--draws", type=whole_number(1, what="--draws"), default=5,
                   help="draws of the effects-from-rows rung, averaged (default 5)")
    p.add_argument("--seed", type=seed_number, default=0, help="seed of those draws")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_floors)


def _floors(args: argparse.Namespace) -> int:
    floors = learnable_floors(args.data, draws=args.draws, seed=args.seed)
    print(floors_json(floors) if args.json else floors_markdown(floors))
    return 0


def _robustness(args: argparse.Namespace) -> int:
    base_config = load_config(args.config)
    # A bad request fails before the output directory is created or marked.
    check_request(preset=args.preset, seeds=args.seeds, datasets=_split(args.datasets),
                  rows=_split(args.rows), base_config=base_config, overrides=args.overrides)
    claim_directory(args.out, inputs=[args.config], overwrite=args.overwrite, reuse=True)
    record = run_robustness(args.out, preset=args.preset, seeds=args.seeds,
                            datasets=_split(args.datasets), rows=_split(args.rows),
                            data_seed=args.data_seed, base_config=base_config,
                            overrides=args.overrides, figure_rows=args.figure_rows,
                            tune=_budget(args))
    print((Path(args.out) / MARKDOWN_FILE).read_text())
    print(f"table: {args.out}/{MARKDOWN_FILE} ({record['wall_seconds']:.1f} s)")
    return 0


def _add_days(names: argparse._SubParsersAction) -> None:
    title = "day by day: generated days of logs, the local pipeline as of each day (one table)"
    p = names.add_parser("days", help=title, description=title + ": OUT/logs holds the days"
                         " (grmodel data days: --window-days days of history, then one day per"
                         " run), OUT/runs the pipeline runs (one MLflow store and registry),"
                         " OUT/days.md, OUT/days.html (with the timeline OUT/days.png) and"
                         " OUT/days.json one row per day (grmodel/experiments/days.py).")
    p.add_argument("--out", required=True, help="simulation directory (logs, runs, the report)")
    p.add_argument("--preset", default="tiny", choices=("tiny", "default", "full"),
                   help="the world's size and rows per day (its big_rows / 20)")
    p.add_argument("--rows-per-day", type=whole_number(0, what="--rows-per-day"), default=0,
                   help="interactions a day (default 0: the preset's big_rows / 20)")
    p.add_argument("--days", type=whole_number(1, what="--days"), default=5,
                   help="days simulated: one pipeline run as of each (default 5)")
    p.add_argument("--window-days", type=whole_number(MIN_WINDOW_DAYS, what="--window-days"),
                   default=2,
                   help="each run trains on this many days before its day (default 2); the logs"
                        " start this many days before the first simulated day")
    p.add_argument("--drift", action="append", default=[], metavar="KIND@DAY",
                   help="plant a drift in force from simulated day DAY (1 .. --days) on:"
                        " label_shift, feature_mix or new_category (repeatable)")
    p.add_argument("--data-seed", type=seed_number, default=2024,
                   help="seed of the generated world")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter, as for grmodel pipeline run (repeatable); the"
                        " data source, window, as_of and MLflow store are the simulation's")
    p.add_argument("overrides", nargs="*", metavar="[MODEL:]KEY=VALUE",
                   help="config overrides of the pipeline (added to its overrides parameter)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing directory that grmodel wrote for another purpose")
    p.set_defaults(handler=_days)


def _days(args: argparse.Namespace) -> int:
    # lazy: the pipeline (kfp) loads only when this command runs
    from grmodel.cli.pipeline import apply_params
    from grmodel.data.kuairec.synth import DaysConfig, SynthConfig
    from grmodel.data.kuairec.synth.days import drift_days
    from grmodel.experiments.days import ROWS_FILE, simulate_days
    from grmodel.experiments.days_report import REPORT_FILES, days_table
    from grmodel.pipeline.params import PipelineParams
    from grmodel.pipeline.stages.plan import check_overrides

    # Every argument is checked before the directory is claimed: a refused run leaves none.
    # A simulated day DAY is the log day window_days + DAY - 1 (0-based): the first runs'
    # windows are history only.
    planted = {field: args.window_days + day - 1 for field, day in drift_days(
        args.drift, range(1, args.days + 1), f"a simulated day, 1 .. {args.days}").items()}
    days = DaysConfig(days=args.days + args.window_days, rows_per_day=args.rows_per_day,
                      **planted)
    days.validate()
    params = apply_params(PipelineParams(), args.param)
    params = params.with_values({"overrides": [*params.overrides, *args.overrides]})
    check_overrides(params.baselines, params.overrides)
    with output_lock(args.out):  # one simulation at a time per directory
        claim_directory(args.out, overwrite=args.overwrite)
        # Replaced as the runs go: never a file grmodel did not write there.
        foreign = [name for name in foreign_files(args.out)
                   if name in (ROWS_FILE, *REPORT_FILES)]
        if foreign:
            raise OutputError(f"output {args.out}: holds {', '.join(foreign)}, which grmodel did"
                              f" not write (rule: {FOREIGN_RULE})")
        rows = simulate_days(args.out, SynthConfig.preset(args.preset, seed=args.data_seed), days,
                             args.window_days, params)
    print(days_table(rows))
    print(f"\nreport: {args.out}/{REPORT_FILES[0]}, {args.out}/{REPORT_FILES[1]}")
    return 0
