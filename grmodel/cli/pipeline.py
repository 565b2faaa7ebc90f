"""``grmodel pipeline``: compile the DAG, run it locally, submit or schedule it on Kubeflow;
``grmodel main``: the README's main job (the whole pipeline locally on the default data).

Parameters are ``--param NAME=VALUE`` (names and defaults: ``grmodel.pipeline.params``);
lists and numbers are written as JSON (``--param 'baselines=["cread","tpm","d2q"]'``).
``--param 'overrides=[...]'`` adds to the default overrides (which fix what the defaults get
wrong, such as TPM's w_var); ``--param 'overrides!=[...]'`` replaces them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from grmodel.cli import seed_number, whole_number
from grmodel.outputs import check_output_file, claim_directory, output_lock
from grmodel.pipeline.diagram import PIPELINE_DOC, update_doc
from grmodel.pipeline.local import local_params, run_local, summary
from grmodel.pipeline.main_job import main_job_params, run_main_job
from grmodel.pipeline.params import APPENDED_PARAMS, PipelineParams
from grmodel.pipeline.remote import (
    COMPILED_PIPELINE,
    cluster_params,
    compile_pipeline,
    is_compiled_pipeline,
    schedule,
    submit,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("pipeline", help="the Kubeflow pipeline: compile, run, submit, schedule")
    commands = group.add_subparsers(dest="pipeline_command", required=True)

    p = commands.add_parser("compile", help="write the pipeline YAML (and the DAG in docs/pipeline.md)")
    p.add_argument("--out", default=None, help="default: pipelines/grmodel_pipeline.yaml")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out that grmodel compiled (never another file)")
    p.add_argument("--train-pvc", default=None, metavar="CLAIM",
                   help="a ReadWriteMany claim for multi-replica GR training (train_replicas > 1);"
                        " needs --out")
    p.add_argument("--spark-pvc", default=None, metavar="CLAIM",
                   help="a ReadWriteMany claim for engine=spark: ingest, vocabulary and encoding run"
                        " as SparkApplications sharing it; needs --out")
    p.set_defaults(handler=_compile)

    p = commands.add_parser("run", help="run the whole pipeline (--local: through kfp.local)")
    p.add_argument("--local", action="store_true", required=True,
                   help="run here with kfp.local (use `submit` for a cluster)")
    p.add_argument("--workdir", default="runs/pipeline", help="pipeline root, MLflow store, outputs")
    p.add_argument("--preset", default="default", help="data: the generator preset (tiny, default, full)")
    p.add_argument("--seed", type=seed_number, default=2024, help="data: the generator seed")
    _params(p)
    p.add_argument("--overwrite", action="store_true",
                   help="use a workdir that grmodel wrote for another purpose")
    p.set_defaults(handler=_run)

    for name, text in (("submit", "start one run on a Kubeflow Pipelines cluster"),
                       ("schedule", "create a recurring run on a Kubeflow Pipelines cluster")):
        p = commands.add_parser(name, help=text)
        p.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://ml-pipeline-ui:80")
        p.add_argument("--package", default=None, help="compiled YAML (default: the committed one)")
        p.add_argument("--experiment", default="grmodel", help="KFP experiment")
        p.add_argument("--namespace", default=None, help="multi-user Kubeflow: the profile namespace")
        p.add_argument("--service-account", default=None)
        p.add_argument("--no-cache", action="store_true", help="disable step caching for this run")
        p.add_argument("--repo", default=".", help="checkout whose data.dvc and origin fill defaults")
        _params(p)
        if name == "submit":
            p.add_argument("--run-name", default=None)
        else:
            p.add_argument("--cron", required=True, help="5-field cron (or KFP's 6 with seconds)")
            p.add_argument("--job-name", default="grmodel-scheduled")
            p.add_argument("--max-concurrency", type=whole_number(1, what="--max-concurrency"),
                           default=1)
            p.add_argument("--catchup", action="store_true", help="backfill missed intervals")
        p.set_defaults(handler=_submit if name == "submit" else _schedule)

    p = subparsers.add_parser(
        "main", help="the main job: the whole pipeline locally (kfp.local) on the embedded default"
    )
    p.add_argument("--workdir", default="runs/main",
                   help="pipeline root, MLflow store (mlflow.db) and every stage's outputs")
    p.add_argument("--preset", default="default", help="generator preset (tiny, default, full)")
    p.add_argument("--seed", type=seed_number, default=2024)
    p.add_argument("overrides", nargs="*", help="[MODEL:]section.key=value config overrides")
    p.add_argument("--overwrite", action="store_true",
                   help="use a workdir that grmodel wrote for another purpose")
    p.set_defaults(handler=_main)


def _params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter (repeatable)")


def parse_params(items: list[str]) -> list[tuple[str, Any, bool]]:
    """``NAME=VALUE`` / ``NAME!=VALUE`` items as ``(name, typed value, replace)``: JSON where the
    parameter is not a string; ``!=`` asks to replace a list that ``=`` would add to."""
    types = {f.name: f.type for f in dataclasses.fields(PipelineParams)}
    parsed = []
    for item in items:
        name, sep, text = item.partition("=")
        replace = name.endswith("!")
        name = name.removesuffix("!").strip()
        if not sep or name not in types:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE with NAME one of {sorted(types)}")
        if types[name] == "str":
            parsed.append((name, text, replace))
            continue
        try:
            parsed.append((name, json.loads(text), replace))
        except json.JSONDecodeError:
            raise ValueError(f"--param {item!r}: {name} takes JSON ({types[name]})") from None
    return parsed


def apply_params(params: PipelineParams, items: list[str]) -> PipelineParams:
    """``params`` with the ``--param`` items applied: ``overrides=`` appends, ``!=`` replaces."""
    values: dict[str, Any] = {}
    for name, value, replace in parse_params(items):
        if name in APPENDED_PARAMS and not replace:
            if not isinstance(value, list):
                raise ValueError(f"--param {name}: takes a JSON list of strings")
            value = [*values.get(name, getattr(params, name)), *value]
        values[name] = value
    return params.with_values(values)


def _compile(args: argparse.Namespace) -> int:
    for flag, value in (("--train-pvc", args.train_pvc), ("--spark-pvc", args.spark_pvc)):
        if value and not args.out:
            raise ValueError(f"{flag}: give --out too (the committed YAML is the default pipeline)")
    if args.out is None:  # the committed pipeline of this checkout: recompiled in place
        out = compile_pipeline(COMPILED_PIPELINE, args.train_pvc, args.spark_pvc)
    else:
        with output_lock(args.out):
            check_output_file(args.out, overwrite=args.overwrite, is_ours=is_compiled_pipeline)
            out = compile_pipeline(args.out, args.train_pvc, args.spark_pvc)
    print(f"wrote {out}")
    if args.out is None and PIPELINE_DOC.is_file() and update_doc(PIPELINE_DOC, out):
        print(f"updated the DAG in {PIPELINE_DOC}")
    return 0


def _run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    base = main_job_params(workdir, args.preset, args.seed)
    given = {name: value for name, value, _ in parse_params(args.param)}
    if given.get("data_source", base.data_source) != base.data_source:
        # The main job's data repository and version belong to its own source only.
        base = base.with_values({"data_repo": "", "data_version": ""})
    params = local_params(apply_params(base, args.param))
    # Refused before the workdir exists: what the plan stage or the fetch would refuse later.
    # lazy: the data stages import the validation suites (great expectations)
    from grmodel.pipeline.stages.data import check_local_logs
    from grmodel.pipeline.stages.plan import check_overrides

    check_overrides(params.baselines, params.overrides)
    if params.data_source == "logs":
        check_local_logs(params.data_repo, params.as_of, params.window_days)
    check_tracking_server(params.mlflow_tracking_uri)
    with output_lock(workdir):  # one run at a time per workdir; its cached stages are reused
        claim_directory(workdir, overwrite=args.overwrite, reuse=True)
        print(summary(run_local(params, workdir, verbose=args.verbose)))
    return 0


def check_tracking_server(uri: str) -> None:
    """A tracking server that does not answer fails the run now, before any stage (the first
    stage to log would otherwise find out minutes later)."""
    from grmodel.pipeline.live import unreachable
    from grmodel.redact import strip_credentials

    why = unreachable(uri) if uri.startswith(("http://", "https://")) else ""
    if why:  # worded by error_line, as every unreachable service is
        raise ConnectionError(f"{strip_credentials(uri)} ({why})")


def _cluster_params(args: argparse.Namespace, recurring: bool = False) -> Any:
    return cluster_params(apply_params(PipelineParams(), args.param), args.repo,
                          recurring=recurring)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"package": args.package or COMPILED_PIPELINE, "experiment": args.experiment,
            "namespace": args.namespace, "service_account": args.service_account,
            "enable_caching": False if args.no_cache else None}


def _submit(args: argparse.Namespace) -> int:
    done = submit(args.host, _cluster_params(args), run_name=args.run_name, **_options(args))
    print(f"{done.kind} {done.id} in experiment {done.experiment_id}: {done.link}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    done = schedule(args.host, _cluster_params(args, recurring=True), cron=args.cron,
                    job_name=args.job_name,
                    max_concurrency=args.max_concurrency, catchup=args.catchup, **_options(args))
    print(f"{done.kind} {done.id} in experiment {done.experiment_id}: {done.link}")
    return 0


def _main(args: argparse.Namespace) -> int:
    with output_lock(args.workdir):  # one run at a time per workdir; its cached stages are reused
        claim_directory(args.workdir, overwrite=args.overwrite, reuse=True)
        run_main_job(Path(args.workdir), preset=args.preset, seed=args.seed,
                     overrides=args.overrides, verbose=args.verbose)
    return 0
