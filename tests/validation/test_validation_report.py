"""ValidationReport: verdict, severity, the summary paragraph and the written files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from grmodel.validation import CheckResult, ValidationFailed, ValidationReport


def result(check_id: str, status: str, percent: float | None = None, **extra) -> CheckResult:
    return CheckResult(
        table="t.csv", check_id=check_id, expectation=check_id.split("(")[0], rule=f"rule {check_id}",
        severity="warning" if status == "warning" else "error", status=status,
        unexpected_count=None if percent is None else int(percent), element_count=100,
        unexpected_percent=percent, **extra,
    )


def report(*checks: CheckResult) -> ValidationReport:
    return ValidationReport(suite="s", source="src", params={"bound": (1, 2)}, tables=[],
                            checks=list(checks), versions={"grmodel": "0"}, created_at="now")


def test_warnings_and_skips_do_not_fail() -> None:
    r = report(result("a", "passed"), result("b", "warning", 40.0), result("c", "skipped"))
    assert r.success and r.raise_for_failure() is r
    assert "passed: 0 failed, 1 warning(s), 1 passed, 1 skipped of 3 checks" in r.summary()
    assert "Warnings: t.csv: rule b" in r.summary()


def test_summary_names_the_worst_failures_first() -> None:
    r = report(
        result("small", "failed", 0.5, samples=[-1]),
        result("big", "failed", 60.0, samples=["x", "y"]),
        result("median", "failed", observed_value=9.5),  # aggregate: no share, listed first
        result("tiny", "failed", 0.01),
    )
    summary = r.summary()
    assert summary.index("rule median") < summary.index("rule big") < summary.index("rule small")
    assert "rule tiny" not in summary and "and 1 more." in summary
    assert "broken by 60 of 100 (60%), e.g. 'x', 'y'" in summary
    with pytest.raises(ValidationFailed, match="FAILED: 4 failed"):
        r.raise_for_failure()


def test_written_json_is_strict_and_complete(tmp_path: Path) -> None:
    r = report(result("n", "failed", 1.0, samples=[math.nan, math.inf, None]))
    paths = r.write(tmp_path / "out")

    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    record = json.loads(paths["json"].read_text(), parse_constant=reject)
    assert record["checks"][0]["samples"] == ["NaN", "inf", None]
    assert record["params"] == {"bound": [1, 2]}
    assert record["counts"]["failed"] == 1 and record["summary"] == r.summary()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "validation.html", "validation.json", "validation.md"]
    assert "rule n" in paths["md"].read_text() and "rule n" in paths["html"].read_text()
