"""``guacamole-json`` mode: a ``data`` token for Apache Guacamole's JSON auth extension.

Format (guacamole-auth-json): base64( AES-128-CBC, zero IV, PKCS#5 padding,
over HMAC-SHA256(key, json) ‖ json ), one shared 128-bit key
(``json-secret-key`` in guacamole.properties, 32 hex digits) signing and
encrypting. The zero IV is the extension's choice, not ours; it is tolerable
because every token's JSON differs (expiry, connection) and the HMAC comes
first. Pure ``cryptography``; no Django.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ZERO_IV = bytes(16)


def _key(secret_hex: str) -> bytes:
    try:
        key = bytes.fromhex(secret_hex)
    except (ValueError, TypeError):
        key = b""
    if len(key) != 16:
        raise ValueError("the JSON auth secret must be 32 hex digits (128 bits)")
    return key


def make_token(
    secret_hex: str,
    *,
    username: str,
    connections: Mapping[str, Mapping[str, Any]],
    expires_at: float,
    single_use: bool = True,
) -> str:
    """Sign and encrypt a login for ``username`` with ``connections``.

    ``connections`` maps a connection name to ``{"protocol": "ssh",
    "parameters": {...}}``; ``expires_at`` is epoch seconds (the extension
    wants milliseconds, converted here). Parameter values become strings.
    """
    key = _key(secret_hex)
    if not username:
        raise ValueError("username is required")
    body = {
        "username": username,
        "expires": int(expires_at * 1000),
        "singleUse": bool(single_use),
        "connections": {
            name: {
                "protocol": conn["protocol"],
                "parameters": {k: _text(v) for k, v in conn.get("parameters", {}).items()},
            }
            for name, conn in connections.items()
        },
    }
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    signed = hmac.new(key, data, hashlib.sha256).digest() + data
    padder = padding.PKCS7(128).padder()
    plain = padder.update(signed) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def iframe_url(guacamole_url: str, token: str) -> str:
    """The iframe ``src``: the web app reads ``?data=`` and moves it behind ``#/``.

    The token is URL-encoded (base64 has ``+ / =``). It does reach the
    Guacamole web app's access log; it is single use and expires, so keep
    ``expires_at`` short (seconds) and make that log private.
    """
    return f"{guacamole_url.rstrip('/')}/?data={quote(token, safe='')}"
