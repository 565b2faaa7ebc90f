"""``grmodel train | predict | evaluate``: one model on a processed dataset."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from pathlib import Path

from grmodel.atomic import write_json_atomic
from grmodel.checkpoint import load_checkpoint, load_encoders
from grmodel.cli import CommandError, required_tracking_uri, whole_number
from grmodel.config import MAX_TEXT_BYTES, ConfigError, RunConfig, load_config, model_defaults
from grmodel.distributed import launch_env
from grmodel.evaluate import evaluate_models, format_table
from grmodel.locate import dataset_dir, model_dir
from grmodel.outputs import (
    FILE_MARK,
    check_output,
    check_output_file,
    check_safe,
    file_mark,
    output_lock,
)
from grmodel.predict import check_input, predict_parquet
from grmodel.registry.pyfunc import resolve_model_uri
from grmodel.training.loop import default_state_dir, train_model
from grmodel.training.records import finished_model
from grmodel.training.state import StateStore

OVERRIDES_ENV = "GRMODEL_OVERRIDES"  # space-separated section.key=value items for `grmodel train`


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model on a processed dataset")
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--model", default=None, help="model name (default: the config's, gr)")
    config = p.add_mutually_exclusive_group()
    config.add_argument("--config", default=None, help="JSON or YAML config file")
    config.add_argument("--config-json", default=None, metavar="JSON",
                        help="the config as JSON text (how a PyTorchJob passes it)")
    p.add_argument("--state-dir", default=None,
                   help="resumable training state (default: <out>.state; removed once the model"
                        " is written)")
    p.add_argument("--label-state", default=None, metavar="JSON_FILE",
                   help="the model's label state (e.g. GR's vocabulary from a pipeline stage)"
                        " instead of fitting it on the train split")
    p.add_argument("--resume", action="store_true",
                   help="continue from the training state when one exists (same config and number"
                        " of processes), else start afresh")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.lr=1e-3"
                   f" (${OVERRIDES_ENV}, space-separated, is applied after them)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grmodel output (never a directory grmodel did not write)")
    p.set_defaults(handler=_train)

    p = subparsers.add_parser("predict", help="score a Parquet file with a trained model")
    p.add_argument(
        "--model", required=True, help="model directory or MLflow model URI (models:/NAME@champion)"
    )
    p.add_argument("--input", required=True, help="Parquet file with the feature columns")
    p.add_argument("--output", required=True, help="Parquet file to write (adds 'prediction')")
    p.add_argument("--batch-size", type=whole_number(1, what="the batch size"), default=4096,
                   help="rows scored at once (default 4096)")
    p.add_argument("--raw-ids", action="store_true",
                   help="the feature columns hold raw values (source ids, categories, numbers):"
                        " the model's encoders map them to ids (unseen values to the OOV id)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grmodel output (never a directory grmodel did not write)")
    p.set_defaults(handler=_predict)

    p = subparsers.add_parser("evaluate", help="score model directories on the test split")
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grmodel output (never a directory grmodel did not write)")
    p.set_defaults(handler=_evaluate)



def _train(args: argparse.Namespace) -> int:
    env = launch_env()  # under torchrun: only rank 0 logs and prints
    if env is not None and env[0] != 0:
        logging.getLogger().setLevel(logging.WARNING)
    # $GRMODEL_OVERRIDES comes last: e.g. small sizes for every training a script starts.
    from_env = os.environ.get(OVERRIDES_ENV, "").split()
    _refuse_data_override(args.overrides, "as an override")
    _refuse_data_override(from_env, f"in ${OVERRIDES_ENV}")
    # Without a config file, the model's named defaults (config.MODEL_DEFAULTS: the GBDT's
    # shrinkage, TPM's w_var) come first, as in the pipeline and the experiments; a config
    # file is taken as it is.
    name = args.model or next((o.partition("=")[2] for o in args.overrides
                               if o.startswith("model_name=")), "gr")
    named = [] if args.config or args.config_json else model_defaults(name)
    overrides = [f"data.processed_dir={dataset_dir(args.data)}", *named, *args.overrides,
                 *from_env]
    if args.model:
        overrides.append(f"model_name={args.model}")
    if args.config_json is not None:
        if len(args.config_json) > MAX_TEXT_BYTES:
            raise ConfigError(f"--config-json: {len(args.config_json):,} characters (rule: at most"
                              f" {MAX_TEXT_BYTES:,}; a config is a small text)")
        try:
            raw = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json: not valid JSON ({exc})") from None
        except RecursionError:
            raise ConfigError("--config-json: nested too deeply (rule: a JSON config of at most a"
                              " few levels)") from None
        if not isinstance(raw, dict):
            raise ConfigError("--config-json: the top level must be a mapping")
        config = RunConfig.from_dict(raw).with_overrides(overrides)
    else:
        config = load_config(args.config, overrides)
    label_state = None
    if args.label_state is not None:
        path = Path(args.label_state)
        if not path.is_file():
            raise FileNotFoundError(f"--label-state {path}: not found")
        label_state = json.loads(path.read_text())
    check_safe(args.out, inputs=[args.data, args.label_state, args.config])
    state_dir = args.state_dir or default_state_dir(args.out)
    state = StateStore(state_dir)
    state.claim(inputs=[args.data, args.out, args.label_state, args.config])
    # One writer per model and per training state (rank 0 writes both): held for the whole run.
    with contextlib.ExitStack() as locks:
        if env is None or env[0] == 0:
            locks.enter_context(output_lock(args.out))
            locks.enter_context(output_lock(state_dir))
        identical = not args.overwrite and finished_model(config, args.out) is not None
        check_output(args.out, inputs=[args.data, args.label_state, args.config],
                     overwrite=args.overwrite, identical=identical)
        state.claim(inputs=[args.data, args.out, args.label_state, args.config])  # still ours
        if identical:
            print(f"{args.out} already holds the finished model of this config and dataset:"
                  " reused, not trained again (pass --overwrite to train again)")
            return 0
        result = train_model(config, args.out, label_state, state_dir=state_dir,
                             resume=args.resume)
    if env is not None and env[0] != 0:
        return 0
    print(
        f"{config.model_name}: best epoch {result.best_epoch}, valid MAE "
        f"{result.best_valid['mae']:.4f}, XAUC {result.best_valid['xauc']:.4f}; "
        f"{result.samples_per_second:.0f} samples/s; model in {result.model_dir}"
    )
    return 0


def _refuse_data_override(overrides: list[str], where: str) -> None:
    """``--data`` names the dataset: an override of ``data.processed_dir`` (on the command line
    or in $GRMODEL_OVERRIDES) would silently train on another one, and put --out inside it."""
    for item in overrides:
        if item.partition("=")[0].strip() == "data.processed_dir":
            raise CommandError(f"{item!r} {where}: conflicts with --data (rule: --data alone names"
                               " the dataset; drop the data.processed_dir override)")


def _predict(args: argparse.Namespace) -> int:
    check_input(args.input)  # before the output checks: a missing input is the first thing to fix
    with output_lock(args.output):  # one writer per output, for the whole write
        check_output_file(args.output, inputs=[args.input, args.model], overwrite=args.overwrite)
        if str(args.model).startswith(("models:/", "runs:/")):  # read from a tracking server
            required_tracking_uri(None)
        model_dir = resolve_model_uri(args.model)
        model, _ = load_checkpoint(model_dir)
        encoders = load_encoders(model_dir, model.schema) if args.raw_ids else None
        rows = predict_parquet(model, args.input, args.output, batch_size=args.batch_size,
                               encoders=encoders, progress=True)
    print(f"wrote {rows} predictions to {args.output}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    model_dirs = {}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CommandError(f"--model {item!r}: expected NAME=DIR (rule: each model is named,"
                               " e.g. gr=runs/main/latest/models/gr)")
        model_dirs[name] = model_dir(path)
    with contextlib.ExitStack() as lock:
        if args.out:
            lock.enter_context(output_lock(args.out))
            check_output_file(args.out, inputs=[args.data, *model_dirs.values()],
                              overwrite=args.overwrite)
        results = evaluate_models(dataset_dir(args.data), model_dirs)
        print(format_table(results))
        if args.out:
            # grmodel's mark beside the results: a later --overwrite replaces only such a file.
            write_json_atomic(args.out, {FILE_MARK: file_mark("evaluate"),
                                         "results": results})
    return 0
