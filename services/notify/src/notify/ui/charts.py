"""Charts as server-rendered SVG (no script, no library, no inline style: only presentation
attributes, which the page's `style-src 'self'` allows), and the table behind each chart,
which is also what its CSV download holds — the chart, the table and the CSV agree."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

PALETTE = ("#1f5fbf", "#e0a100", "#b3261e", "#1e7b34", "#7b51b5", "#0f8b8d", "#66707c")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 36, 12, 44


@dataclass
class Table:
    """One chart's numbers: a header and rows of cells (numbers stay numbers for the CSV)."""

    columns: list[str]
    rows: list[list[object]] = field(default_factory=list)

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(["" if v is None else v for v in row] for row in self.rows)
        return buf.getvalue()


def _nice_max(value: float) -> float:
    """A round upper bound for an axis (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _frame(ymax: float, fmt: Callable[[float], str]) -> list[str]:
    parts = []
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        v = ymax * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#d9dee4" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#66707c">{escape(fmt(v))}</text>'
        )
    return parts


def _legend(names: Sequence[str]) -> str:
    items = []
    x = LEFT
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        items.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#1d232b">'
            f"{escape(name)}</text>"
        )
        x += 24 + 7 * len(name)
    return "".join(items)


def _svg(title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
) -> Markup:
    """Grouped bars: one group per label, one bar per series."""
    values = [v for vs in series.values() for v in vs if v is not None]
    ymax = _nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group = plot_w / max(1, len(labels))
    bar = group * 0.8 / max(1, len(series))
    body = _frame(ymax, fmt)
    for j, label in enumerate(labels):
        x0 = LEFT + j * group + group * 0.1
        for i, (name, vs) in enumerate(series.items()):
            v = vs[j] if j < len(vs) else None
            if v is None:
                continue
            h = plot_h * max(0.0, float(v)) / ymax
            body.append(
                f'<rect x="{x0 + i * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar * 0.92:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                f"<title>{escape(name)} · {escape(label)}: {escape(fmt(float(v)))}</title></rect>"
            )
        body.append(
            f'<text x="{LEFT + j * group + group / 2:.1f}" y="{TOP + plot_h + 14}" '
            f'text-anchor="middle" font-size="11" fill="#1d232b">{escape(label)}</text>'
        )
    body.append(_legend(list(series)))
    return _svg(title, body)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    fmt: Callable[[float], str] = lambda v: f"{v:,.1f}",
) -> Markup:
    """Lines over `labels` (periods), one per series; a missing value breaks the line."""
    values = [v for vs in series.values() for v in vs if v is not None]
    ymax = _nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(labels) - 1) if len(labels) > 1 else 0
    body = _frame(ymax, fmt)
    for j, label in enumerate(labels):
        body.append(
            f'<text x="{LEFT + j * step:.1f}" y="{TOP + plot_h + 14}" text-anchor="middle" '
            f'font-size="11" fill="#1d232b">{escape(label)}</text>'
        )
    for i, (name, vs) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = [
            (LEFT + j * step, TOP + plot_h - plot_h * max(0.0, float(v)) / ymax, v, labels[j])
            for j, v in enumerate(vs[: len(labels)])
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, y, v, label in points:
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} · {escape(label)}: {escape(fmt(float(v)))}</title></circle>"
            )
    body.append(_legend(list(series)))
    return _svg(title, body)
