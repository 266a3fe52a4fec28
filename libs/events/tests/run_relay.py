"""Runs an OutboxRelay as its own process, so that a test can SIGKILL it at a chosen point."""

import asyncio
import sys

from duewise_events.relay import OutboxRelay


async def main(dsn: str, bootstrap: str, pause: float) -> None:
    relay = OutboxRelay(dsn, bootstrap, lock_key=4242, pause_before_mark_s=pause)
    await relay.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
