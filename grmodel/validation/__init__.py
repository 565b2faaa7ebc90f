"""Data validation with great_expectations: suites as code, the runner, reports and the gate.

The pipeline calls ``validate_raw_kuairec`` before ingest, ``validate_processed`` after it and
``validate_tokens`` before training; ``report.raise_for_failure()`` stops the run on a failed
error-severity check, and ``report.write(out_dir)`` keeps the JSON and human reports.
"""

from grmodel.validation.report import CheckResult, ValidationFailed, ValidationReport
from grmodel.validation.runner import (
    validate_processed,
    validate_raw_kuairec,
    validate_tokens,
)
from grmodel.validation.suites import ProcessedBounds, RawBounds, TokenBounds

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
