"""Sealing the per-user API tokens the UI keeps (encrypt-then-MAC, standard library only).

Each UI user has its own bearer tokens for the other services, so that what the user does
there is done with the user's role (collector or admin) and logged under the user's name.
They must be stored: the UI acts with them on every request. At rest they are sealed with a
key derived from NOTIFY_SECRET_KEY (which production refuses to run without):

    nonce (16 random bytes) · ciphertext = token XOR HMAC-SHA256(k_enc, nonce ‖ counter)…
    · tag = HMAC-SHA256(k_mac, "v1" ‖ nonce ‖ ciphertext)

HMAC-SHA256 used as a pseudo-random function in counter mode is a stream cipher, and the
tag checked before decrypting makes it authenticated encryption (encrypt-then-MAC). No
dependency is added for it (the `cryptography` wheel is not in the lock file); should it be,
Fernet or AES-GCM would replace these functions without a schema change (the "v1." prefix
says which format a value is in). A copy of the database alone does not give the tokens;
the database and the secret key together do — the same trust as the signing key itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_VERSION = "v1"
_NONCE = 16
_TAG = 32


class SealError(ValueError):
    """The sealed value was altered, or sealed with another key."""


def _keys(secret: str) -> tuple[bytes, bytes]:
    root = hashlib.sha256(("duewise-ui-tokens:" + secret).encode()).digest()
    enc = hmac.new(root, b"encrypt", hashlib.sha256).digest()
    mac = hmac.new(root, b"authenticate", hashlib.sha256).digest()
    return enc, mac


def _stream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    return b"".join(
        hmac.new(key, nonce + i.to_bytes(4, "big"), hashlib.sha256).digest() for i in range(blocks)
    )[:length]


def seal(secret: str, plaintext: str) -> str:
    """`plaintext` encrypted and authenticated under `secret`: `v1.<base64url>`."""
    enc, mac = _keys(secret)
    nonce = os.urandom(_NONCE)
    data = plaintext.encode()
    ct = bytes(a ^ b for a, b in zip(data, _stream(enc, nonce, len(data)), strict=True))
    tag = hmac.new(mac, _VERSION.encode() + nonce + ct, hashlib.sha256).digest()
    return f"{_VERSION}." + base64.urlsafe_b64encode(nonce + ct + tag).decode()


def unseal(secret: str, sealed: str) -> str:
    """The plaintext of `seal(secret, …)`; SealError when it was altered or the key differs."""
    version, _, body = sealed.partition(".")
    if version != _VERSION:
        raise SealError(f"unknown sealed format {version!r}")
    try:
        raw = base64.urlsafe_b64decode(body.encode())
    except ValueError as exc:
        raise SealError("not base64") from exc
    if len(raw) < _NONCE + _TAG:
        raise SealError("too short")
    nonce, ct, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    enc, mac = _keys(secret)
    expected = hmac.new(mac, _VERSION.encode() + nonce + ct, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        raise SealError("the tag does not match: altered, or sealed with another key")
    return bytes(a ^ b for a, b in zip(ct, _stream(enc, nonce, len(ct)), strict=True)).decode()
