"""grmodel: train, evaluate and ship Generative Regression (GR) watch-time models.

``COMMANDS`` is the command table: each top-level command, the module of its command group and
its one-line help. A group module defines ``register(subparsers)``, which adds its commands.
Only the module of the command being run is imported (the others appear in ``--help`` by their
one-line help), so a module imports what its handlers need at the top and ``grmodel --help``
stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from grmodel import __version__
from grmodel.interrupts import Terminated
from grmodel.redact import install_log_redaction, redact


class CommandError(RuntimeError):
    """An expected failure: printed as one clear message, exit status 1 (no traceback)."""


class EnvironmentFault(OSError):
    """A fault of the machine or a service, not of the input: exit status 3 (names the cause)."""


# Libraries whose INFO lines are chatter to a user ("Skipping registering function ...",
# "Creating initial MLflow database tables"); their warnings still show, everything with -v.
QUIET_LOGGERS = ("great_expectations", "alembic", "kfp", "mlflow")


# Exit statuses (the README's table): what a script or scheduler can tell apart.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERNAL = 0, 1, 2, 3, 70
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
# Rules for errors whose message does not state one, by exception class name.
DEFAULT_RULES = {
    "FileNotFoundError": "every input must exist",
    "IsADirectoryError": "a file was expected",
    "NotADirectoryError": "a directory was expected",
    "PermissionError": "grmodel needs read access to its inputs and write access to its outputs",
    "ConfigError": "config values must fit the config schema (grmodel/config.py)",
    "UnicodeDecodeError": "text inputs are UTF-8",
}
# Faults of the machine, not of the input or of grmodel: exit status 3, with their cause.
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EFBIG: "file too large for the file system or its limits",
                   errno.EIO: "input/output error", errno.EROFS: "read-only file system"}
STORAGE_RULE = ("the file system must have room and accept writes: free space, raise the quota"
                " or limit, or write elsewhere")
# A tracking store's database that another process holds, or that is no database.
_STORE_FAULTS = {"database is locked": "the tracking store is locked by another process (rule:"
                 " one writer of an sqlite store at a time; retry when it is done, or use an"
                 " MLflow server)",
                 "file is not a database": "the tracking store is not an SQLite database (rule:"
                 " an sqlite:/// tracking URI names an MLflow database)",
                 "unable to open database": "the tracking store cannot be opened (rule: an"
                 " sqlite:/// tracking URI names a readable MLflow database)"}
# MLflow's answer for something that does not exist (an unknown run id, model or version).
_NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
_UNREACHABLE = ("ConnectionError", "MaxRetryError", "NewConnectionError", "ConnectTimeout",
                "ReadTimeout", "TimeoutError", "ConnectionRefusedError", "ProtocolError")


# command: (module of its group, help), in the order --help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("grmodel.cli.train", "train a model on a processed dataset"),
    "predict": ("grmodel.cli.train", "score a Parquet file with a trained model"),
    "evaluate": ("grmodel.cli.train", "score model directories on the test split"),
    "data": ("grmodel.cli.data", "generate, ingest, build and version datasets"),
    "validate": ("grmodel.cli.validate",
                 "validate raw KuaiRec files, a processed dataset or tokenised labels"),
    "experiment": ("grmodel.cli.experiment",
                   "train, evaluate and report one of the paper's tables or the robustness suite"),
    "registry": ("grmodel.cli.registry",
                 "MLflow model registry: register, promote, rollback, history"),
    "reproduce": ("grmodel.cli.reproduce",
                  "re-run a recorded run on its data version and compare every metric"),
    "pipeline": ("grmodel.cli.pipeline", "the Kubeflow pipeline: compile, run, submit, schedule"),
    "main": ("grmodel.cli.pipeline",
             "the main job: the whole pipeline locally (kfp.local) on the embedded default"),
}


# The largest seed every random generator grmodel seeds accepts (numpy's legacy seeding).
MAX_SEED = 2**32 - 1


def whole_number(low: int, high: int | None = None, what: str = "the value"
                 ) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in [low, high], refused with its rule before any
    work (a batch size of -1 or 0, a negative seed)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bound = f">= {low:,}" if high is None else f"in [{low:,}, {high:,}]"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range (rule: {what} is a whole"
                                             f" number {bound})")
        return value

    return parse


def seed_number(text: str) -> int:
    """An argparse ``type`` for a seed: a whole number in [0, 2**32 - 1]."""
    return whole_number(0, MAX_SEED, "a seed")(text)


def required_tracking_uri(given: str | None) -> str:
    """The MLflow tracking URI: ``given`` (``--tracking-uri``), else ``MLFLOW_TRACKING_URI``.
    With neither, stop before MLflow runs: its default store would create a stray
    ``./mlflow.db`` in the working directory."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise CommandError("no MLflow tracking server: pass --tracking-uri URI or set"
                           " MLFLOW_TRACKING_URI (after `make main`: sqlite:///runs/main/mlflow.db)"
                           " (rule: MLflow commands name their tracking server; none writes a"
                           " ./mlflow.db)")
    if uri.startswith("sqlite:"):
        _check_sqlite_store(uri)
    return uri


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_store(uri: str) -> None:
    """An sqlite tracking URI names an existing MLflow database: MLflow would otherwise create
    the file, and its folders, wherever a mistyped URI points."""
    # sqlite:///relative/x.db, sqlite:////absolute/x.db
    path = Path(uri.removeprefix("sqlite:///").partition("?")[0])
    if not path.is_file():
        raise FileNotFoundError(f"{uri}: no such tracking store (rule: MLflow commands read an"
                                " existing tracking store and never create one; check the path)")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise EnvironmentFault(exc.errno, f"{uri}: cannot read the tracking store ({exc.strerror})"
                               " (rule: the tracking store is readable)") from None
    if header != SQLITE_HEADER:
        raise EnvironmentFault(f"{uri}: not an SQLite database (rule: an sqlite:/// tracking URI"
                               " names an MLflow database)")


def _quiet(record: logging.LogRecord) -> bool:
    # A handler filter, not logger levels: some libraries set their loggers' levels on import.
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET_LOGGERS


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. With ``command`` (the word after ``grmodel``), only that command's group is
    imported and registered, the others are listed by their help; without, all are."""
    parser = argparse.ArgumentParser(prog="grmodel", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"grmodel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True)
    groups = {module for module, _ in COMMANDS.values()}
    if command is not None:
        groups = {COMMANDS[command][0]} if command in COMMANDS else set()
    for name, (module, help_text) in COMMANDS.items():
        if name in subparsers.choices:
            continue
        if module in groups:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    _name_leaves(parser)
    return parser


def _name_leaves(parser: argparse.ArgumentParser) -> None:
    """Give every leaf command its name (``data tabular``) for its error lines."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        parser.set_defaults(command_name=parser.prog.partition(" ")[2])
    for group in groups:
        for child in dict.fromkeys(group.choices.values()):  # aliases map to one parser
            _name_leaves(child)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _unreachable(exc: BaseException) -> bool:
    """Whether a network service (MLflow, the KFP API, a git remote) could not be reached."""
    names = {type(e).__name__ for e in _chain(exc)} | {
        c.__name__ for e in _chain(exc) for c in type(e).__mro__}
    text = str(exc)
    return bool(names & set(_UNREACHABLE)) or "Max retries exceeded" in text


def _storage_fault(exc: BaseException) -> str | None:
    """The cause when a write failed because of the file system (a full disk), else None."""
    for e in _chain(exc):
        if not isinstance(e, OSError):
            continue
        code = e.errno
        if code is None:
            found = re.search(r"\[errno (\d+)\]", str(e), re.IGNORECASE)
            code = int(found.group(1)) if found else None
        if code in _STORAGE_ERRNOS:
            return _STORAGE_ERRNOS[code]
    return None


def error_line(command: str, exc: BaseException) -> tuple[str, int]:
    """The one line printed for an error (credentials redacted) and the exit status."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    chain_text = " ".join(str(e) for e in _chain(exc))
    storage = _storage_fault(exc)
    store = next((why for key, why in _STORE_FAULTS.items() if key in chain_text), None)
    codes = {getattr(e, "error_code", None) for e in _chain(exc)}
    if storage is not None:
        text = re.sub(r"^\[Errno \d+\] ", "", text)
        where = text if storage in text or "cannot write" in text else f"{text}: {storage}"
        return (redact(f"grmodel {command}: error: environment: {where} (rule: {STORAGE_RULE})"),
                EXIT_ENVIRONMENT)
    if store is not None:
        return redact(f"grmodel {command}: error: environment: {store}"), EXIT_ENVIRONMENT
    if codes & set(_NOT_FOUND_CODES):
        first = text.split(" (Background on this error")[0]
        message = first if "rule:" in first else f"{first} (rule: name an existing run or model)"
        return redact(f"grmodel {command}: error: {message}"), EXIT_ERROR
    if _unreachable(exc):
        text = " ".join(str(e) for e in _chain(exc))
        url = re.search(r"\b[a-z][a-z0-9+.-]*://[^\s'\"()]+|host='[^']+', port=\d+", text)
        reason = ("connection refused" if "refused" in text.lower() else
                  "timed out" if "timed out" in text.lower() else "no connection")
        message = (f"{url.group(0) if url else 'a service'}: not reachable ({reason}) (rule: the"
                   " MLflow tracking server, the Kubeflow API and git remotes must be reachable;"
                   " check the URL, the network and MLFLOW_TRACKING_URI)")
        status = EXIT_ENVIRONMENT
    else:
        known = isinstance(exc, CommandError | ValueError | LookupError | OSError)
        if known:
            rule = DEFAULT_RULES.get(type(exc).__name__, "see `grmodel " + command + " --help`")
            message = text if "rule:" in text or "(rule" in text else f"{text} (rule: {rule})"
            status = EXIT_ENVIRONMENT if isinstance(exc, OSError) and not isinstance(
                exc, FileNotFoundError | IsADirectoryError | NotADirectoryError) else EXIT_ERROR
        else:
            message = (f"internal error {type(exc).__name__}: {text} (rule: this is a bug in"
                       " grmodel; rerun with -v for the traceback and report it)")
            status = EXIT_INTERNAL
    if status == EXIT_ENVIRONMENT:
        message = f"environment: {message}"
    return redact(f"grmodel {command}: error: {message}"), status


def _quiet_http_retries(record: logging.LogRecord) -> bool:
    """Without -v, an HTTP client's retry warnings are not shown: the error line says it."""
    return record.levelno >= logging.ERROR or not record.name.startswith(
        ("urllib3", "kfp_server_api", "mlflow.utils.request_utils"))


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()




def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    if not {"-v", "--verbose"} & set(argv):
        # Before the command's modules are imported: pyspark (pulled in by great expectations)
        # warns about the pandas version on import, even before `grmodel validate --help`.
        warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed): its status
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()
    if not args.verbose:  # an unreachable server is one error line, not pages of retries
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet)
            handler.addFilter(_quiet_http_retries)
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
    # MLflow retries an unreachable server 7 times with doubling back-off (minutes); a command
    # line reports it after a few seconds instead (an explicit setting wins).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    command = getattr(args, "command_name", args.command)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        print(f"grmodel {command}: interrupted ({name}); temporary outputs removed, earlier outputs"
              " untouched", file=sys.stderr)
        return EXIT_SIGTERM if name == "SIGTERM" else EXIT_SIGINT
    except Exception as exc:
        line, status = error_line(command, exc)
        if args.verbose:
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        print(line, file=sys.stderr)
        return status


