"""Inline SVG line charts for the run pages: no JavaScript, no chart library."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
Series = tuple[str, Sequence[tuple[float, float | None]]]  # (name, [(x, y)])


def line_chart(title: str, series: Sequence[Series], width: int = 420, height: int = 220,
               y_range: tuple[float, float] | None = None) -> str:
    pad_l, pad_r, pad_t, pad_b = 44, 10, 24, 28
    points = [(x, y) for _, pts in series for x, y in pts if y is not None]
    if not points:
        return f'<p class="muted">{escape(title)}: no data yet</p>'
    xs = [x for x, _ in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range or (min(y for _, y in points), max(y for _, y in points))
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def sy(y: float) -> float:
        return height - pad_b - (y - y0) / (y1 - y0) * (height - pad_t - pad_b)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{pad_l}" y="15" class="title">{escape(title)}</text>',
             f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" '
             f'y2="{height - pad_b}" class="axis"/>',
             f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" class="axis"/>']
    for value in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{pad_l - 4}" y="{sy(value) + 4:.1f}" class="tick" '
                     f'text-anchor="end">{value:.3g}</text>')
    parts.append(f'<text x="{sx(x0):.1f}" y="{height - 10}" class="tick">{x0:g}</text>')
    parts.append(f'<text x="{sx(x1):.1f}" y="{height - 10}" class="tick" '
                 f'text-anchor="end">{x1:g}</text>')
    for i, (name, pts) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts if y is not None)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"><title>{escape(name)}</title></polyline>')
        for x, y in pts:
            if y is not None:
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" '
                             f'fill="{colour}"/>')
        parts.append(f'<text x="{width - pad_r - 4}" y="{pad_t + 12 + 13 * i}" '
                     f'text-anchor="end" fill="{colour}" class="legend">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
