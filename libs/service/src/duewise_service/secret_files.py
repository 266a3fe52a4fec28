"""Settings that read secrets from the environment or from mounted files, nothing else.

Every service's `Settings` derives from `ServiceSettings`. A setting is read, in pydantic-
settings' order, from the constructor, then an environment variable, then a file named like
the variable in the secrets directory (DUEWISE_SECRETS_DIR, default /run/secrets: where
Docker and Compose mount secrets, and where a Kubernetes Secret volume goes), then its
default. So `DUEWISE_ADMIN_TOKEN` may be an environment variable or the file
/run/secrets/DUEWISE_ADMIN_TOKEN (name matched case-insensitively; one trailing newline
ignored), and a database URL with its password likewise. No secret has a usable default in
code: the defaults are empty or local-only placeholders that production refuses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

DEFAULT_SECRETS_DIR = "/run/secrets"


def secrets_dir() -> Path | None:
    """The directory secrets are mounted in, when it exists (DUEWISE_SECRETS_DIR)."""
    path = Path(os.environ.get("DUEWISE_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    return path if path.is_dir() else None


class ServiceSettings(BaseSettings):
    """A BaseSettings whose secrets directory is looked up when the settings are read (not
    when the module is imported), so a test or a process can point it elsewhere."""

    def __init__(self, **values: Any) -> None:
        if "_secrets_dir" not in values:
            values["_secrets_dir"] = secrets_dir()
        super().__init__(**values)
