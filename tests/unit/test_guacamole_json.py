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

from labxblock.guacamole_json import connection_parameters, iframe_url, lab_url, make_token

SECRET = "4c0b569e4c96df157eee1b65dd0e4d41"  # the example key from the extension's docs
CONNECTIONS = {
    "lab-a": {
        "protocol": "ssh",
        "parameters": {"hostname": "10.0.0.5", "port": 22, "username": "training", "read-only": True},
    }
}


def open_signed(token: str, secret_hex: str = SECRET) -> tuple[bytes, dict]:
    """What guacamole-auth-json does: AES-128-CBC zero IV, strip PKCS#5, check HMAC, parse.

    Returns the signature (the extension's single-use denylist remembers it) and the JSON.
    """
    key = bytes.fromhex(secret_hex)
    raw = base64.b64decode(token, validate=True)
    plain = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor().update(raw)
    pad = plain[-1]
    assert 1 <= pad <= 16 and plain[-pad:] == bytes([pad]) * pad, "PKCS#5 padding"
    plain = plain[:-pad]
    signature, body = plain[:32], plain[32:]
    assert hmac.compare_digest(signature, hmac.new(key, body, hashlib.sha256).digest()), "HMAC-SHA256"
    return signature, json.loads(body)


def decrypt(token: str, secret_hex: str = SECRET) -> dict:
    return open_signed(token, secret_hex)[1]


def accepted(token: str, *, now: float, seen: set[bytes], secret_hex: str = SECRET) -> dict | None:
    """UserDataService.fromCredentials: decrypt, verify, then refuse expired or reused single-use data.

    None where the extension answers "invalid credentials". ``seen`` is its denylist of
    the signatures of single-use data already accepted.
    """
    try:
        signature, body = open_signed(token, secret_hex)
    except (AssertionError, ValueError):
        return None
    if body.get("expires") is not None and now * 1000 > body["expires"]:
        return None
    if body.get("singleUse"):
        if signature in seen:
            return None
        seen.add(signature)
    return body


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


def test_iframe_url_keeps_the_token_in_the_fragment():
    token = make_token(SECRET, username="u", connections=CONNECTIONS, expires_at=1)
    url = iframe_url("https://guac.example.org/guacamole/", token)
    parts = urlsplit(url)
    assert (parts.path, parts.query) == ("/guacamole/", "")  # nothing a server or its access log sees
    assert parts.fragment.startswith("/?data=")  # the web app's own form: its router reads #/?…
    assert parse_qs(parts.fragment.removeprefix("/?"))["data"] == [token]
    assert not set("+/=") & set(parts.fragment.removeprefix("/?data="))


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize(
    ("host_key", "port", "line"),
    [
        (KEY, 22, f"10.0.0.5 {KEY}"),
        (KEY + " root@lab", 2222, f"[10.0.0.5]:2222 {KEY}"),
        (f"lab.example.org,10.0.0.5 {KEY}", 2222, f"[10.0.0.5]:2222 {KEY}"),  # a known_hosts line
    ],
)
def test_ssh_parameters_carry_the_host_key_as_guacd_reads_it(host_key, port, line):
    parameters = connection_parameters(protocol="ssh", host="10.0.0.5", port=port, username="training",
                                       private_key="PRIVATE", host_key=host_key, read_only=True)
    assert parameters == {"hostname": "10.0.0.5", "port": str(port), "username": "training",
                          "private-key": "PRIVATE", "host-key": line, "read-only": "true"}


def test_a_host_key_output_that_is_no_key_is_refused():
    with pytest.raises(ValueError, match="not an SSH public key"):
        connection_parameters(protocol="ssh", host="10.0.0.5", port=22, username="u", host_key="garbage")


def test_rdp_parameters_take_the_password_and_options_never_over_the_labs_own():
    parameters = connection_parameters(
        protocol="rdp", host="10.0.0.6", port=3389, username="Administrator", password="pw",
        private_key="PRIVATE", host_key=KEY,
        options={"ignore-cert": True, "security": "nla", "hostname": "evil"},
    )
    assert parameters == {"hostname": "10.0.0.6", "port": "3389", "username": "Administrator",
                          "password": "pw", "ignore-cert": "true", "security": "nla"}


def test_lab_url_is_single_use_and_expires_after_the_ttl():
    url = lab_url("https://guac.example.org/", SECRET, learner="learner-7", connection="lab-x-1",
                  protocol="ssh", parameters={"hostname": "10.0.0.5"}, ttl_seconds=20, now=1_700_000_000)
    token = parse_qs(urlsplit(url).fragment.removeprefix("/?"))["data"][0]
    seen: set[bytes] = set()
    assert accepted(token, now=1_700_000_020, seen=set()) is not None  # to the last millisecond
    assert accepted(token, now=1_700_000_020.01, seen=set()) is None  # then never again
    body = accepted(token, now=1_700_000_005, seen=seen)
    assert body is not None and accepted(token, now=1_700_000_006, seen=seen) is None  # used once only
    assert (body["username"], body["expires"], body["singleUse"]) == ("learner-7", 1_700_000_020_000, True)
    assert body["connections"] == {"lab-x-1": {"protocol": "ssh", "parameters": {"hostname": "10.0.0.5"}}}
