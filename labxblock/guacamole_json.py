"""``guacamole-json`` mode: the iframe URL of Apache Guacamole's web app with a ``data`` token
for its JSON auth extension.

Format (guacamole-auth-json): base64( AES-128-CBC, zero IV, PKCS#5 padding,
over HMAC-SHA256(key, json) ‖ json ), one shared 128-bit key
(``json-secret-key`` in guacamole.properties, 32 hex digits) signing and
encrypting. The zero IV is the extension's choice, not ours; it is tolerable
because every token's JSON differs (expiry, connection) and the HMAC comes
first. The extension refuses a token past ``expires`` and, with ``singleUse``,
a token it has seen before.

Where the token travels: in the URL's fragment, ``<guacamole_url>/#/?data=…``,
which browsers never send to a server, so no access log, proxy or Referer sees
it. That is the web app's own URL form: its AngularJS router reads parameters
from the fragment (``relocateParameters.js`` moves a query string there) and
``authenticationService.updateCurrentToken($location.search())`` POSTs them,
``data`` included, to ``api/tokens`` as a form body. A single connection then
opens at once (the web app's home page is the user's only connection).
Pure ``cryptography`` (and ``hostkeys``, paramiko, to read the lab's host key); no Django.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from labxblock import hostkeys

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
    """The iframe ``src``: the token behind ``#/?data=``, URL-encoded (base64 has ``+ / =``)."""
    return f"{guacamole_url.rstrip('/')}/#/?data={quote(token, safe='')}"


def connection_parameters(
    *, protocol: str, host: str, port: int, username: str, private_key: str = "", password: str = "",
    host_key: str = "", read_only: bool = False, options: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """guacd's parameters for one lab connection, named as in Guacamole's manual.

    ``host_key`` (the lab's ``<type> <base64>``, or a known_hosts line: the template's
    output or the key recorded at the lab's first answer) becomes the known_hosts line
    guacd's libssh2 matches against the host and port it connects to (``hostkeys``).
    ``options`` are the display and RDP settings (``security``, ``ignore-cert`` …).
    """
    parameters = {"hostname": host, "port": str(port), "username": username}
    if password:
        parameters["password"] = password
    if protocol == "ssh":
        if private_key:
            parameters["private-key"] = private_key
        if host_key.strip():
            try:
                parameters["host-key"] = hostkeys.known_hosts_line(host_key, host, port)
            except ValueError:
                raise ValueError("the lab's host_key is not an SSH public key") from None
    if read_only:
        parameters["read-only"] = "true"
    for name, value in (options or {}).items():
        parameters.setdefault(name, _text(value))  # never overrides the lab's own address or login
    return parameters


def lab_url(
    guacamole_url: str, secret_hex: str, *, learner: str, connection: str, protocol: str,
    parameters: Mapping[str, str], ttl_seconds: int, now: float | None = None,
) -> str:
    """The iframe URL opening ``connection`` for ``learner``: a single-use token valid ``ttl_seconds``."""
    at = time.time() if now is None else now
    token = make_token(secret_hex, username=learner, expires_at=at + ttl_seconds, single_use=True,
                       connections={connection: {"protocol": protocol, "parameters": parameters}})
    return iframe_url(guacamole_url, token)
