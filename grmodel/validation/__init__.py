"""Data validation with great_expectations: suites as code, the runner, reports and the gate.

One module per suite family (``raw``, ``processed``, ``tokens``: bounds, suites and entry
point), over ``checks`` (the check and suite descriptions), ``tables`` (reading a file for
validation), ``gx`` (running a suite with great_expectations) and ``report``.

The pipeline calls ``validate_raw_kuairec`` before ingest, ``validate_processed`` after it and
``validate_tokens`` before training; ``report.raise_for_failure()`` stops the run on a failed
error-severity check, and ``report.write(out_dir)`` keeps the JSON and human reports.
"""

from grmodel.validation.processed import ProcessedBounds, validate_processed
from grmodel.validation.raw import RawBounds, validate_raw_kuairec
from grmodel.validation.report import CheckResult, ValidationFailed, ValidationReport
from grmodel.validation.tokens import TokenBounds, validate_tokens

__all__ = [
    "CheckResult",
    "ProcessedBounds",
    "RawBounds",
    "TokenBounds",
    "ValidationFailed",
    "ValidationReport",
    "validate_processed",
    "validate_raw_kuairec",
    "validate_tokens",
]
