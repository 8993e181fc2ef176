"""Result tables as Markdown and CSV (evaluation comparisons, sweep summaries)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def format_cell(value: Any) -> str:
    """Floats with two decimals (three significant digits below 0.01, e.g. learning rates), NaN as '-'."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:.2f}"
    return str(value)


def as_number(value: Any) -> float:
    """A CSV cell or JSON value as a float: NaN for a missing value (None, ""), text that is no number, or a bool."""
    try:
        return float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return float("nan")


def short_number(value: str, digits: int = 3) -> str:
    """A number written in full, to ``digits`` significant digits where that is shorter (``0.0018724000045`` ->
    ``0.00187``); anything else as it is."""
    try:
        number = float(value)
    except ValueError:
        return value
    text = f"{number:.{digits}g}"
    return text if math.isfinite(number) and len(text) < len(value) else value


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row[column]) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """The ``columns`` of ``rows`` as CSV; a missing number (NaN: a single run's std, a skipped estimate) is an
    empty cell, which spreadsheets and pandas read as missing."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(
            {key: "" if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}
            for row in rows
        )
