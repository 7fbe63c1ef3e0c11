"""Small helpers that turn results into the report's tables: numbers with intervals as text, and the table
shape the template draws ({"title", "columns", "rows", "note"})."""

from __future__ import annotations

import json
import math


def committed_data(name: str) -> tuple[dict, str] | None:
    """(contents, "docs/data/NAME") of one of the project's committed data files (a study run beside which the
    report sets its own), None if this checkout does not have it."""
    from phasediff.report.samples import CHECKPOINTS

    path = CHECKPOINTS.parent / "docs" / "data" / name
    try:
        return json.loads(path.read_text()), f"docs/data/{name}"
    except (OSError, ValueError):
        return None


def number(value, digits: int = 3) -> str:
    """A value to ``digits`` significant figures; "-" for None or NaN, "inf" for infinities."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) < 5e-5:
        return "0" if value == 0 else "~0"  # |value| < 0.00005: below any resolution shown here
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 else f"{value:.1g}"


def fixed(value, places: int = 3) -> str:
    """A value with ``places`` decimals; "-" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.{places}f}"


def interval(value, low, high, digits: int = 3, places: int | None = None) -> str:
    """"v [lo, hi]"; an end that is None is "open"."""
    show = (lambda v: fixed(v, places)) if places is not None else (lambda v: number(v, digits))
    ends = ", ".join("open" if v is None else show(v) for v in (low, high))
    return f"{show(value)} [{ends}]"


def table(title: str, columns: list[str], rows: list[list], note: str | None = None) -> dict:
    return {"title": title, "columns": list(columns), "rows": [[str(c) for c in row] for row in rows], "note": note}


def figure(src: str, caption: str, kind: str = "plot") -> dict:
    """A figure of the report; ``kind`` "samples" (image grids) is drawn smaller, several to a row."""
    return {"src": src, "caption": caption, "kind": kind}


def comparison(rows: list[dict], title: str = "Beside the paper (arXiv 2508.06614)",
               header: str = "paper") -> dict | None:
    """The paper's numbers beside ours: rows {quantity, paper, ours, source}."""
    if not rows:
        return None
    return table(title, ["quantity", header, "this run", f"source of the {header}'s number"],
                 [[r["quantity"], r["paper"], r["ours"], r["source"]] for r in rows])
