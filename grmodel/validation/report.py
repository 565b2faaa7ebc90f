"""Validation results: per-check records, the report object, and its JSON/Markdown/HTML forms.

A :class:`ValidationReport` is what every ``validate_*`` function returns. ``success`` is False
when any error-severity check failed; warnings (``mostly`` thresholds, warning checks) are
listed but never fail it. ``write`` puts ``validation.json`` (machine-readable),
``validation.md`` and ``validation.html`` (for people) in a directory, each written atomically;
a report family may name its files otherwise (``FILE_STEM``) and add tables (``sections``).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from grmodel.atomic import write_text_atomic

Status = Literal["passed", "failed", "warning", "skipped"]
REPORT_FORMAT = "grmodel.validation/1"
WORST_NAMED = 3  # failures named in the summary paragraph


class ValidationFailed(ValueError):
    """Raised by :meth:`ValidationReport.raise_for_failure`; the message is the summary."""


@dataclass
class CheckResult:
    """The outcome of one check on one table."""

    table: str
    check_id: str
    expectation: str
    rule: str
    severity: str
    status: Status
    column: str | None = None
    engine: str = "great_expectations"  # or "reader": file-structure checks done while reading
    kwargs: dict[str, Any] = field(default_factory=dict)
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: Any = None
    samples: list[Any] = field(default_factory=list)
    sample_rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    def describe(self) -> str:
        """One line: where, which rule, how much, examples."""
        where = f"{self.table} {self.column}" if self.column else self.table
        text = f"{where}: {self.rule} [{self.check_id}]"
        if self.unexpected_count is not None:
            text += f" broken by {self.unexpected_count:,}"
            if self.element_count is not None:
                text += f" of {self.element_count:,}"
            if self.unexpected_percent is not None:
                text += f" ({self.unexpected_percent:.3g}%)"
            if self.samples:
                text += ", e.g. " + ", ".join(_short(v) for v in self.samples[:3])
        elif self.observed_value is not None:
            text += f", observed {_short(self.observed_value)}"
        if self.note:
            text += f" ({self.note})"
        return text

    def badness(self) -> float:
        """Sort key for "worst": file-structure failures, then table-level ones (as bad as
        100% of rows), then by the share of rows that break the rule."""
        if self.engine == "reader":
            return math.inf
        return 100.0 if self.unexpected_percent is None else self.unexpected_percent


@dataclass(frozen=True)
class Section:
    """A table of a report's human forms: a title, a header and rows of text."""

    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class ValidationReport:
    """All check results of one validation run."""

    FILE_STEM: ClassVar[str] = "validation"

    suite: str  # "raw_kuairec", "processed" or "tokens"
    source: str
    params: dict[str, Any]
    tables: list[dict[str, Any]]
    checks: list[CheckResult]
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    @property
    def success(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return sorted((c for c in self.checks if c.status == "failed"), key=lambda c: -c.badness())

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "warning"]

    def failed_ids(self) -> set[tuple[str, str]]:
        """(table, check id) of every failed check: what tests assert on."""
        return {(c.table, c.check_id) for c in self.failures}

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in ("passed", "failed", "warning", "skipped")}
        for check in self.checks:
            counts[check.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return plain({
            "format": REPORT_FORMAT,
            "suite": self.suite,
            "source": self.source,
            "success": self.success,
            "summary": self.summary(),
            "counts": self.counts(),
            "worst_first": [[c.table, c.check_id] for c in self.failures],
            "created_at": self.created_at,
            "seconds": round(self.seconds, 3),
            "versions": self.versions,
            "params": self.params,
            "tables": self.tables,
            "checks": [c.to_dict() for c in self.checks],
        })

    def summary(self) -> str:
        """One paragraph: verdict, counts, the worst failures, and the warnings."""
        counts = self.counts()
        verdict = "passed" if self.success else "FAILED"
        text = (
            f"Validation '{self.suite}' of {self.source} {verdict}: {counts['failed']} failed, "
            f"{counts['warning']} warning(s), {counts['passed']} passed, "
            f"{counts['skipped']} skipped of {len(self.checks)} checks."
        )
        failures = self.failures
        if failures:
            worst = "; ".join(c.describe() for c in failures[:WORST_NAMED])
            more = len(failures) - WORST_NAMED
            text += f" Worst: {worst}" + (f"; and {more} more." if more > 0 else ".")
        if self.warnings:
            text += " Warnings: " + "; ".join(c.describe() for c in self.warnings[:WORST_NAMED])
            text += "."
        return text

    def raise_for_failure(self) -> ValidationReport:
        """The pipeline gate: raise :class:`ValidationFailed` unless the report passed."""
        if not self.success:
            raise ValidationFailed(self.summary())
        return self

    def gate(self, out_dir: str | Path) -> ValidationReport:
        """Write the reports, then raise :class:`ValidationFailed` if a check failed: the
        pipeline's stop before anything downstream is built."""
        self.write(out_dir)
        return self.raise_for_failure()

    def sections(self) -> list[Section]:
        """Tables a report family adds after the failures and warnings (none here)."""
        return []

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``<FILE_STEM>.json``, ``.md`` and ``.html`` (each atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        record = self.to_dict()
        sections = self.sections()
        texts = {
            "json": json.dumps(record, indent=2) + "\n",
            "md": render_markdown(record, sections),
            "html": render_html(record, sections),
        }
        paths = {}
        for suffix, text in texts.items():
            paths[suffix] = out / f"{self.FILE_STEM}.{suffix}"
            write_text_atomic(paths[suffix], text)
        return paths


def plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to strings ("NaN", "inf")."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(plain(value)) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ------------------------------------------------------------------------------- rendering


def _rows_text(check: dict[str, Any]) -> tuple[str, str]:
    """(unexpected, percent) cells of a check record."""
    if check["unexpected_count"] is None:
        observed = check["observed_value"]
        return ("observed " + _short(observed) if observed is not None else "", "")
    percent = check["unexpected_percent"]
    return f"{check['unexpected_count']:,}", "" if percent is None else f"{percent:.3g}%"


def _samples_text(check: dict[str, Any]) -> str:
    if check["sample_rows"]:
        return "; ".join(
            ", ".join(f"{k}={_short(v, 24)}" for k, v in row.items())
            for row in check["sample_rows"][:3]
        )
    return ", ".join(_short(v) for v in check["samples"][:5])


def _problem_rows(record: dict[str, Any]) -> list[list[str]]:
    """Failures (worst first, as in the summary) then warnings, one table row each."""
    checks = {(c["table"], c["check_id"]): c for c in record["checks"]}
    ordered = [checks[tuple(key)] for key in record["worst_first"]]
    ordered += [c for c in record["checks"] if c["status"] == "warning"]
    rows = []
    for check in ordered:
        unexpected, percent = _rows_text(check)
        rows.append([
            check["status"], check["table"], check["column"] or "", check["rule"],
            check["expectation"], unexpected, percent, _samples_text(check), check["note"],
        ])
    return rows


def _title(record: dict[str, Any]) -> str:
    """A report family's own title, else "Validation PASSED: raw_kuairec"."""
    verdict = "PASSED" if record["success"] else "FAILED"
    return record.get("title") or f"Validation {verdict}: {record['suite']}"


PROBLEM_HEADER = ["status", "table", "column", "rule", "expectation", "unexpected", "%",
                  "samples", "note"]


def render_markdown(record: dict[str, Any], sections: Sequence[Section] = ()) -> str:
    """The human report as Markdown: verdict, summary, failures and warnings, the family's
    sections, all checks."""

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
        return lines

    lines = [f"# {_title(record)}", "", record["summary"], ""]
    lines += [f"- source: `{record['source']}`", f"- created: {record['created_at']}",
              f"- seconds: {record['seconds']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()), ""]
    problems = _problem_rows(record)
    lines += ["## Failures and warnings", ""]
    lines += table(PROBLEM_HEADER, problems) if problems else ["None."]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        lines += table(section.header, section.rows) if section.rows else ["None."]
    lines += ["", "## Tables", ""]
    lines += table(["table", "path", "rows", "columns"], [
        [t["name"], t.get("path") or "", str(t.get("rows", "")), ", ".join(t.get("columns", []))]
        for t in record["tables"]
    ])
    lines += ["", "## All checks", ""]
    lines += table(["status", "table", "check", "rule", "unexpected", "%"], [
        [c["status"], c["table"], c["check_id"], c["rule"], *_rows_text(c)]
        for c in record["checks"]
    ])
    lines += ["", "## Parameters", "", "```json", json.dumps(record["params"], indent=2), "```",
              ""]
    return "\n".join(lines)


def render_html(record: dict[str, Any], sections: Sequence[Section] = ()) -> str:
    """The same report as a self-contained HTML page."""

    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    problems = _problem_rows(record)
    all_checks = [[c["status"], c["table"], c["check_id"], c["rule"], *_rows_text(c)]
                  for c in record["checks"]]
    title = html.escape(_title(record))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}"
             "th{background:#eee}")
    return "\n".join([
        "<!DOCTYPE html>",
        f"<html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>",
        f"<body><h1>{title}</h1><p>{html.escape(record['summary'])}</p>",
        f"<p>source: <code>{html.escape(record['source'])}</code>; "
        f"{record['seconds']} s; {html.escape(record['created_at'])}</p>",
        "<h2>Failures and warnings</h2>",
        table(PROBLEM_HEADER, problems) if problems else "<p>None.</p>",
        *(f"<h2>{html.escape(s.title)}</h2>" + (table(s.header, s.rows) if s.rows else
                                                 "<p>None.</p>") for s in sections),
        "<h2>All checks</h2>",
        table(["status", "table", "check", "rule", "unexpected", "%"], all_checks),
        "<h2>Parameters</h2>",
        f"<pre>{html.escape(json.dumps(record['params'], indent=2))}</pre>",
        "</body></html>",
        "",
    ])
