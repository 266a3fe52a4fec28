"""The adapters that talk to the outside world: SMTP email, SMS providers, outbound webhooks.

Nothing here touches the database: each adapter takes a fully formed message, performs one
delivery attempt, and reports what the other side said (or raises an error that says whether
trying again could help). Claiming, retrying and logging belong to the sender worker.
"""

import importlib.util
import sys

# httpx's transport (httpcore 1.0) runs `import sniffio` at every request to tell asyncio from
# trio. sniffio is not installed here (anyio 4.16 no longer needs it), and a failed import is
# not cached: each one walks sys.path again (~0.05 ms, ~5 per request; ~1 ms of CPU for a
# reminder's two last looks, measured in bench/notify_bench's profile). Recording it as
# absent gives the same ImportError at once. Installing sniffio would make this a no-op.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
