"""Inline SVG charts drawn on the server: no script, no build step, no
library in the page. Each function returns markup safe to put in a template;
every label is escaped here, because manager names and category names come
from PBX events and API users."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def _number(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".").replace(",", "\u202f")


def heat_map(counts: Sequence[Sequence[int]], weekdays: Sequence[str], title: str) -> Markup:
    """A 7 x 24 grid, darker for more calls; each cell says its count on hover."""
    cell, gap, left, top = 14, 2, 34, 14
    width = left + 24 * (cell + gap)
    height = top + 7 * (cell + gap)
    peak = max((n for row in counts for n in row), default=0) or 1
    parts = [
        f'<svg class="heat" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for hour in range(0, 24, 3):
        x = left + hour * (cell + gap) + cell / 2
        parts.append(f'<text x="{x}" y="10" class="axis" text-anchor="middle">{hour:02d}</text>')
    for day, row in enumerate(counts):
        y = top + day * (cell + gap)
        parts.append(f'<text x="0" y="{y + cell - 3}" class="axis">{escape(weekdays[day])}</text>')
        for hour, count in enumerate(row):
            x = left + hour * (cell + gap)
            shade = 0.08 + 0.92 * (count / peak) if count else 0.0
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" rx="2"'
                f' data-day="{day}" data-hour="{hour}" data-count="{count}"'
                f' style="fill-opacity:{shade:.3f}" class="cell{"" if count else " empty"}">'
                f"<title>{escape(weekdays[day])} {hour:02d}:00 — {count}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(items: Sequence[tuple[str, float]], title: str, unit: str = "") -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest."""
    row, label_w, bar_w = 22, 130, 170
    width = label_w + bar_w + 70
    height = max(1, len(items)) * row
    peak = max((v for _, v in items), default=0) or 1
    parts = [
        f'<svg class="bars" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for n, (label, value) in enumerate(items):
        y = n * row
        length = max(1.0, bar_w * value / peak) if value else 0.0
        shown = label if len(label) <= 20 else label[:19] + "…"
        parts.append(
            f'<text x="0" y="{y + 15}" class="label">{escape(shown)}'
            f"<title>{escape(label)}</title></text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{length:.1f}" height="14" rx="2"'
            f' class="bar"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + 15}" class="value">'
            f"{escape(_number(value))}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def ratio_ring(share: float | None, label: str) -> Markup:
    """A ring showing a share (0..1), with the percentage in the middle."""
    radius, stroke = 26, 8
    circumference = 2 * 3.14159265 * radius
    filled = circumference * (share or 0.0)
    text = "—" if share is None else f"{share * 100:.0f}%"
    return Markup(
        f'<svg class="ring" viewBox="0 0 70 70" role="img" aria-label="{escape(label)}"'
        ' xmlns="http://www.w3.org/2000/svg">'
        f'<circle cx="35" cy="35" r="{radius}" class="track" stroke-width="{stroke}"/>'
        f'<circle cx="35" cy="35" r="{radius}" class="fill" stroke-width="{stroke}"'
        f' stroke-dasharray="{filled:.1f} {circumference:.1f}" transform="rotate(-90 35 35)"/>'
        f'<text x="35" y="40" text-anchor="middle" class="ring-text">{escape(text)}</text>'
        "</svg>"
    )
