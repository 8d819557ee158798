"""guacamole-json tokens, decrypted and verified independently of the module under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from labxblock.guacamole_json import iframe_url, make_token

SECRET = "4c0b569e4c96df157eee1b65dd0e4d41"  # the example key from the extension's docs
CONNECTIONS = {
    "lab-a": {
        "protocol": "ssh",
        "parameters": {"hostname": "10.0.0.5", "port": 22, "username": "training", "read-only": True},
    }
}


def decrypt(token: str, secret_hex: str = SECRET) -> dict:
    """What guacamole-auth-json does: AES-128-CBC zero IV, strip PKCS#5, check HMAC, parse."""
    key = bytes.fromhex(secret_hex)
    raw = base64.b64decode(token, validate=True)
    plain = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor().update(raw)
    pad = plain[-1]
    assert 1 <= pad <= 16 and plain[-pad:] == bytes([pad]) * pad, "PKCS#5 padding"
    plain = plain[:-pad]
    signature, body = plain[:32], plain[32:]
    assert hmac.compare_digest(signature, hmac.new(key, body, hashlib.sha256).digest()), "HMAC-SHA256"
    return json.loads(body)


def test_token_decrypts_and_verifies():
    token = make_token(SECRET, username="learner-a", connections=CONNECTIONS, expires_at=1_700_000_060.5)
    body = decrypt(token)
    assert body == {
        "username": "learner-a",
        "expires": 1_700_000_060_500,
        "singleUse": True,
        "connections": {
            "lab-a": {
                "protocol": "ssh",
                "parameters": {
                    "hostname": "10.0.0.5",
                    "port": "22",
                    "username": "training",
                    "read-only": "true",
                },
            }
        },
    }


def test_token_matches_openssl():
    """The same bytes as `openssl enc -aes-128-cbc -K key -iv 0` over HMAC ‖ JSON."""
    token = make_token(SECRET, username="u", connections={}, expires_at=1, single_use=False)
    body = decrypt(token)
    data = json.dumps(body, separators=(",", ":")).encode()
    signed = hmac.new(bytes.fromhex(SECRET), data, hashlib.sha256).digest() + data
    out = subprocess.run(
        ["openssl", "enc", "-aes-128-cbc", "-K", SECRET, "-iv", "0" * 32, "-nosalt"],
        input=signed, capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert base64.b64encode(out).decode() == token


def test_wrong_key_does_not_verify():
    token = make_token(SECRET, username="u", connections=CONNECTIONS, expires_at=1)
    with pytest.raises((AssertionError, ValueError)):
        decrypt(token, "00" * 16)


@pytest.mark.parametrize("bad", ["", "abc", "00" * 15, "00" * 32, "zz" * 16])
def test_secret_must_be_128_bits_hex(bad):
    with pytest.raises(ValueError):
        make_token(bad, username="u", connections={}, expires_at=1)


def test_iframe_url_encodes_the_token():
    token = make_token(SECRET, username="u", connections=CONNECTIONS, expires_at=1)
    url = iframe_url("https://guac.example.org/guacamole/", token)
    parts = urlsplit(url)
    assert parts.path == "/guacamole/"
    assert parse_qs(parts.query)["data"] == [token]
    assert "+" not in parts.query and "/" not in parts.query
