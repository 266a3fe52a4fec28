"""/v1/tokens: create API tokens (tokens:admin; the plaintext is returned once) and /me."""

from __future__ import annotations

from invoice.auth import AUTH

router = AUTH.router(admin_scope="tokens:admin")
