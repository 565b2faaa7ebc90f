"""How a report writes its numbers (Markdown and HTML alike)."""

from __future__ import annotations

import math
from typing import Any


def num(value: float | None, digits: int = 4) -> str:
    """``0.1235``; a missing or NaN value is a dash."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def plus_minus(stats: dict[str, Any]) -> str:
    """``mean ± std`` of ``{"mean", "std"}``; the mean alone when there is no std."""
    if stats["std"] is None:
        return num(stats["mean"])
    return f"{num(stats['mean'])} ± {num(stats['std'])}"
