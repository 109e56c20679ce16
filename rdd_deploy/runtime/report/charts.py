"""Inline SVG charts and numbers tied to report.json: every number on the page names the JSON value it shows.

A number is a <span data-json="/runs/0/accuracy/miou" data-scale="100" data-digits="2">; the tests read the
rendered page back and check each one against report.json, so the page cannot drift from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

BAR, GAP, CHAR_WIDTH, CHART_WIDTH = 18, 6, 7.2, 760  # CHAR_WIDTH: a generous average at 12 px sans-serif
COLOURS = ("#1f4e79", "#9dc3e6")


def pointer(*parts: object) -> str:
    """A JSON pointer (RFC 6901) to the value at the given keys."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def formatted(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    """How the page writes a number: fixed digits after scaling, an en dash for none."""
    return "–" if value is None else f"{value * scale:.{digits}f}"


def number(value: float | None, path: str, digits: int = 2, scale: float = 1.0, tag: str = "span") -> str:
    """A number as HTML (or SVG with tag='tspan'), tagged with the JSON pointer of the value it shows."""
    return (f'<{tag} data-json="{escape(path)}" data-scale="{scale:g}" data-digits="{digits}">'
            f"{formatted(value, digits, scale)}</{tag}>")


def bar_chart(rows: Sequence[tuple[str, Sequence[tuple[float | None, str]]]], unit: str, digits: int = 2,
              scale: float = 1.0, series: Sequence[str] = (), width: int = CHART_WIDTH) -> str:
    """Horizontal bars: one group per row label, one bar per (value, JSON pointer) in it, each with its number."""
    values = [v * scale for _, bars in rows for v, _ in bars if v is not None]
    top = max(values, default=1.0) or 1.0
    per_row = max(len(bars) for _, bars in rows) if rows else 1
    row_height = per_row * BAR + GAP * 2
    legend = 18 if series else 0
    height = legend + len(rows) * row_height + 4
    label_width = round(CHAR_WIDTH * max((len(label) for label, _ in rows), default=0)) + 12
    span = width - label_width - 80
    parts = [f'<svg width="{width}" height="{height}" '
             f'role="img" class="chart" font-family="sans-serif" font-size="12">']
    for index, name in enumerate(series):
        x = label_width + index * 120
        parts.append(f'<rect x="{x}" y="2" width="12" height="12" fill="{COLOURS[index % 2]}"/>'
                     f'<text x="{x + 16}" y="12">{escape(name)}</text>')
    for row, (label, bars) in enumerate(rows):
        y = legend + row * row_height + GAP
        parts.append(f'<text x="{label_width - 6}" y="{y + per_row * BAR / 2 + 4}" text-anchor="end">'
                     f"{escape(label)}</text>")
        for slot, (value, path) in enumerate(bars):
            length = 0 if value is None else max(1.0, span * value * scale / top)
            bar_y = y + slot * BAR
            parts.append(f'<rect x="{label_width}" y="{bar_y}" width="{length:.1f}" height="{BAR - 2}" '
                         f'fill="{COLOURS[slot % 2]}"/>')
            parts.append(f'<text x="{label_width + length + 4:.1f}" y="{bar_y + BAR - 5}">'
                         f'{number(value, path, digits, scale, "tspan")}<tspan> {escape(unit)}</tspan></text>')
    parts.append("</svg>")
    return "".join(parts)


def lookup(document: Any, path: str) -> Any:
    """The value a JSON pointer names (the inverse of `pointer`)."""
    for part in path.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document
