"""Secrets come only from the environment or from files mounted in DUEWISE_SECRETS_DIR; no
secret with a usable value is committed in code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("invoice", "dunning", "risk", "notify")
#: Placeholders that are not secrets anywhere that matters: the local development signing
#: key (production refuses to start with it) and the local SMS catcher's token.
LOCAL_PLACEHOLDERS = {
    ("notify", "secret_key"): "duewise-local-development-only",
    ("notify", "sms_auth_token"): "local",
}

READ = """
import json, sys
from {service}.config import Settings
s = Settings()
out = {{}}
for name in sys.argv[1:]:
    v = getattr(s, name)
    out[name] = v.get_secret_value() if hasattr(v, "get_secret_value") else v
print(json.dumps(out))
"""


def _read_settings(
    service: str, secrets_dir: Path, names: list[str], env: dict[str, str] | None = None
) -> dict[str, str]:
    """The settings `names` as a fresh process of `service` reads them."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not (k.endswith(("_TOKEN", "_URL", "_KEY")) or k.startswith("DUEWISE_"))
    }
    clean.update(env or {}, DUEWISE_SECRETS_DIR=str(secrets_dir))
    proc = subprocess.run(
        [sys.executable, "-c", READ.format(service=service), *names],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("service", SERVICES)
def test_the_admin_token_and_database_url_are_read_from_mounted_files(
    service: str, tmp_path: Path
) -> None:
    (tmp_path / "DUEWISE_ADMIN_TOKEN").write_text("token-from-a-file\n")
    url = f"postgresql://{service}:pa55-from-file@db.internal:5432/{service}"
    (tmp_path / "DATABASE_URL").write_text(url + "\n")
    got = _read_settings(service, tmp_path, ["admin_token", "database_url"])
    assert got == {"admin_token": "token-from-a-file", "database_url": url}


def test_notify_reads_its_signing_key_and_smtp_credentials_from_files(tmp_path: Path) -> None:
    (tmp_path / "NOTIFY_SECRET_KEY").write_text("k" * 48)
    (tmp_path / "SMTP_URL").write_text("smtp://mailer:smtp-pass@smtp.internal:587")
    (tmp_path / "SMS_AUTH_TOKEN").write_text("sms-from-file")
    got = _read_settings("notify", tmp_path, ["secret_key", "smtp_url", "sms_auth_token"])
    assert got == {
        "secret_key": "k" * 48,
        "smtp_url": "smtp://mailer:smtp-pass@smtp.internal:587",
        "sms_auth_token": "sms-from-file",
    }


def test_the_environment_wins_over_a_file(tmp_path: Path) -> None:
    (tmp_path / "DUEWISE_ADMIN_TOKEN").write_text("from-file")
    got = _read_settings(
        "invoice", tmp_path, ["admin_token"], env={"DUEWISE_ADMIN_TOKEN": "from-env"}
    )
    assert got == {"admin_token": "from-env"}


@pytest.mark.parametrize("service", SERVICES)
def test_no_secret_default_is_committed(service: str) -> None:
    settings_cls = import_module(f"{service}.config").Settings
    for name, field in settings_cls.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            assert LOCAL_PLACEHOLDERS.get((service, name)) == default.get_secret_value(), (
                f"{service}.{name} has a committed secret default"
            )
        elif isinstance(default, str) and "://" in default:
            assert urlsplit(default).password is None, f"{service}.{name} embeds a password"


def test_production_refuses_the_development_signing_key() -> None:
    from notify.config import Settings
    from notify.main import check_production

    with pytest.raises(RuntimeError, match="NOTIFY_SECRET_KEY"):
        check_production(Settings(env="production"))


def test_no_token_or_private_key_is_committed_in_source() -> None:
    pattern = re.compile(r"dw_[A-Za-z0-9_-]{40,}|-----BEGIN [A-Z ]*PRIVATE KEY-----")
    found = []
    for root in ("libs", "services", "tools", "deploy"):
        for path in (REPO / root).rglob("*"):
            if path.suffix in {".py", ".yaml", ".yml", ".toml", ".env", ".json", ".md"}:
                text = path.read_text(errors="ignore")
                found += [f"{path.relative_to(REPO)}: {m[:12]}…" for m in pattern.findall(text)]
    assert not found
