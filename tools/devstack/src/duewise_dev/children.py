"""A supervised child process: output to a log file (and, prefixed, to the console)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Called with (child name, one line of its output) for the console.
Echo = Callable[[str, str], None]


class Child:
    """One child process of the supervisor, in its own process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        echo: Echo | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self._echo = echo
        self._recent: deque[str] = deque(maxlen=40)
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self.stopping = False  # set once the supervisor asked it to stop

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=1 << 20,  # longest line we accept (a traceback's repr can be long)
            # Own process group: a terminal's Ctrl-C reaches only the supervisor, which
            # then stops children in order (services, broker, database).
            process_group=0,
        )
        self._pump = asyncio.create_task(self._copy_output(), name=f"pump-{self.name}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def wait(self) -> int:
        """Wait for the process to exit and its output to be copied; its exit code."""
        assert self._proc is not None, "not started"
        code = await self._proc.wait()
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                # A grandchild may still hold the pipe open: do not wait on it forever.
                await asyncio.wait_for(asyncio.shield(self._pump), 2.0)
        return code

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process, then SIGKILL its whole group after `grace` seconds."""
        self.stopping = True
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await self.wait()

    def recent_output(self) -> str:
        """The last lines it printed, for error messages."""
        return "\n".join(self._recent) or "(no output)"

    async def _copy_output(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        with self.log_path.open("ab") as log:
            async for raw in self._proc.stdout:
                log.write(raw)
                log.flush()  # so `tail -f` and a crash report see it at once
                line = raw.decode(errors="replace").rstrip()
                self._recent.append(line)
                if self._echo is not None:
                    self._echo(self.name, line)
