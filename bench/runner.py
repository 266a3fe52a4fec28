"""Running a bench's `run(args, console)` so that Ctrl-C and SIGTERM stop what it started."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from rich.console import Console

Run = Callable[[argparse.Namespace, Console], Awaitable[int]]


def run_bench(run: Run, args: argparse.Namespace, *, width: int = 150) -> int:
    """`run` under asyncio; its exit code, 130 on Ctrl-C, 143 on SIGTERM.

    SIGTERM is turned into a cancellation like Ctrl-C, so that the bench's `finally` blocks
    stop every process it started. The console is `width` wide when piped to a file (rich
    defaults to 80 columns there, too narrow for the tables)."""
    console = Console() if sys.stdout.isatty() else Console(width=width)

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args, console)

    try:
        return asyncio.run(guarded())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated; everything started was stopped", file=sys.stderr)
        return 143
