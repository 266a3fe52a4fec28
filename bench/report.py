"""The results table: printed with rich and written as Markdown for the README."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

HEADERS = ("metric", "value", "ceiling", "ratio", "target", "verdict")


@dataclass(frozen=True)
class Row:
    metric: str
    value: str
    ceiling: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


def pct(x: float) -> str:
    """A ratio as a percentage with enough digits to be non-zero: 12.3%, 0.38%, 0.037%."""
    for digits in (1, 2, 3):
        if x >= 10 ** (-digits):
            return f"{x * 100:.{digits}f}%"
    return f"{x * 100:.4f}%"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine() -> str:
    """`2 cores, AMD EPYC …, Linux 6.x, Python 3.11.x`."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cores} cores (nproc), {model}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def print_table(console: Console, title: str, rows: list[Row], notes: list[str]) -> None:
    table = Table(title=title, title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="right" if h in ("value", "ceiling", "ratio") else "left")
    for r in rows:
        style = {"PASS": "green", "MISS": "bold red"}.get(r.verdict, "")
        v = f"[{style}]{r.verdict}[/]" if style else r.verdict
        table.add_row(r.metric, r.value, r.ceiling, r.ratio, r.target, v)
    console.print(table)
    for n in notes:
        console.print(f"- {n}", highlight=False, soft_wrap=True)


def markdown(title: str, rows: list[Row], notes: list[str]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(("---", "---:", "---:", "---:", "---", "---")) + "|",
    ]
    for r in rows:
        cells = (r.metric, r.value, r.ceiling, r.ratio, r.target, r.verdict)
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
