"""Access tests run against the collector UI's test stack: the four real services under
uvicorn on scratch databases, seeded with two collectors' portfolios (carol: Acme, bob:
Bobco) and an admin (ada). The stack is notify's `ui_kit` (reused, not copied)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "notify" / "tests"))

from ui_kit import ui_stack  # noqa: F401  (the session fixture)
