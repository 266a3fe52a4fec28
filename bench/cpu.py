"""CPU seconds per process tree from /proc, to say where the two cores went in a phase."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime+cutime+cstime in seconds) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ppid = int(fields[1])
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ppid, ticks / _TICKS


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root` and its live descendants (and reaped children)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = st
    total = 0.0
    for pid, seconds in cpu.items():
        p = pid
        while p > 1:
            if p == root:
                total += seconds
                break
            p = parents.get(p, 0)
    return total


class CpuMeter:
    """Snapshot CPU of named process trees at `start()`; `stop()` gives seconds used since."""

    def __init__(self, roots: Mapping[str, int | None]) -> None:
        self.roots = {name: pid for name, pid in roots.items() if pid is not None}
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: tree_cpu(pid) for name, pid in self.roots.items()}

    def stop(self) -> dict[str, float]:
        return {
            name: tree_cpu(pid) - self._before.get(name, 0.0) for name, pid in self.roots.items()
        }


def share(used: Mapping[str, float], wall_s: float) -> str:
    """`api 0.92, postgres 0.41, …` in cores (1.00 = one core busy the whole time)."""
    parts = sorted(used.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {seconds / wall_s:.2f}" for name, seconds in parts)
