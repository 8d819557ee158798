"""The guacd stand-in fails loudly on each broken rule (else the gateway tests prove nothing)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labxblock.gateway.protocol import ByteParser, encode
from tests.guacd_standin.server import FAILING_USER, KEY_RETURN, LAB_HOST_KEY, SSH_ARGS, VERSION, GuacdStandin

OTHER_KEY = (
    Ed25519PrivateKey.generate().public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode().split()[1]
)  # fmt: skip

GOOD_CONNECT = encode("connect", VERSION, *([""] * len(SSH_ARGS)))
SIZE = encode("size", 1024, 768, 96)


async def talk(*lines: str, disconnect: bool = False) -> list[str]:
    """Play a client that sends ``lines`` after select/args; return the violations."""
    async with GuacdStandin(expect_violations=True) as guacd:
        reader, writer = await asyncio.open_connection("127.0.0.1", guacd.port)
        writer.write(encode("select", "ssh").encode())
        parser = ByteParser()
        got = []
        while not got:
            got = [i for i, _ in parser.feed(await reader.read(65536))]
        assert got[0][0] == "args" and got[0][1] == VERSION and len(got[0]) == len(SSH_ARGS) + 2
        writer.write("".join(lines).encode())
        if disconnect:
            writer.write(encode("disconnect").encode())
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.1)
        return guacd.violations


def run(*lines: str, disconnect: bool = False) -> list[str]:
    return asyncio.run(talk(*lines, disconnect=disconnect))


def test_a_correct_client_breaks_no_rule():
    assert run(SIZE, GOOD_CONNECT, encode("nop"), disconnect=True) == []


@pytest.mark.parametrize(
    ("lines", "rule"),
    [
        ((SIZE, encode("connect", VERSION, "x")), "connect has 2 values for 43 args"),
        ((SIZE, encode("connect", "", *([""] * len(SSH_ARGS)))), "connect version is ''"),
        ((GOOD_CONNECT,), "no size before connect"),
        ((SIZE, encode("key", 65, 1)), "'key' is not allowed before connect"),
        ((SIZE, GOOD_CONNECT, encode("", "ping", 1)), "internal instruction forwarded"),
        ((SIZE, GOOD_CONNECT), "closed without a disconnect"),
        ((SIZE, "4.size,1.0"), "closed during the handshake"),
    ],
)
def test_each_broken_rule_is_recorded(lines, rule):
    violations = run(*lines, disconnect=rule != "closed without a disconnect")
    assert any(rule in v for v in violations), violations


def test_check_raises_on_violations():
    guacd = GuacdStandin()
    guacd.violations.append("session 0: something")
    with pytest.raises(AssertionError, match="protocol violations"):
        guacd.check()


Sent = list[tuple[str, ...]]


async def connect_as(protocol: str, values: dict[str, str], *typed: str) -> tuple[Sent, list[str]]:
    """A correct client for ``protocol`` with these connect values; what the stand-in sent, and its log."""
    async with GuacdStandin() as guacd:
        reader, writer = await asyncio.open_connection("127.0.0.1", guacd.port)
        parser = ByteParser()
        writer.write(encode("select", protocol).encode())
        got: list[tuple[str, ...]] = []
        while not got:
            got = [i for i, _ in parser.feed(await reader.read(65536))]
        names = got[0][2:]
        writer.write((SIZE + encode("connect", VERSION, *(values.get(n, "") for n in names))).encode())
        for text in typed:
            for char in text:
                keysym = KEY_RETURN if char == "\n" else ord(char)
                writer.write((encode("key", keysym, 1) + encode("key", keysym, 0)).encode())
        sent: list[tuple[str, ...]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                while not any(i[0] == "disconnect" for i in sent):
                    sent += [i for i, _ in parser.feed(await reader.read(65536))]
        if not any(i[0] == "disconnect" for i in sent):
            writer.write(encode("disconnect").encode())
        await writer.drain()
        writer.close()
        session = await guacd.session()
        return sent, session.log


def ssh(**values: str) -> dict[str, str]:
    return {"hostname": "10.1.2.3", "port": "2222", "username": "u", **values}


@pytest.mark.parametrize(
    ("host_key", "status", "logged"),
    [
        (f"[10.1.2.3]:2222 {LAB_HOST_KEY}", None, "Host key match found for 10.1.2.3"),
        (f"10.1.2.3 {LAB_HOST_KEY}", None, "Host key match found"),  # libssh2 tries the plain host too
        (LAB_HOST_KEY, "512", "Host key not found for 10.1.2.3."),  # bare: read as a host "ssh-ed25519"
        (f"[10.9.9.9]:2222 {LAB_HOST_KEY}", "512", "Host key not found"),
        (f"[10.1.2.3]:2222 ssh-ed25519 {OTHER_KEY}", "512", "does not match"),
        ("", None, "host identity will not be verified"),
    ],
    ids=["host-port", "plain-host", "bare", "other-host", "other-key", "none"],
)
def test_host_key_is_checked_as_guacd_does(host_key, status, logged):
    sent, log = asyncio.run(connect_as("ssh", ssh(**{"host-key": host_key})))
    errors = [i for i in sent if i[0] == "error"]
    assert (errors[0][2] if errors else None) == status, sent
    assert any(logged in line for line in log), log


def test_a_failed_login_is_769_then_disconnect():
    sent, _ = asyncio.run(connect_as("ssh", ssh(username=FAILING_USER)))
    assert [i[0] for i in sent] == ["ready", "error", "disconnect"] and sent[1][2] == "769"


@pytest.mark.parametrize(("protocol", "layer"), [("rdp", "0"), ("vnc", "0"), ("ssh", "1")])
def test_desktops_draw_in_layer_0_and_terminals_in_layer_1(protocol, layer):
    sent, _ = asyncio.run(connect_as(protocol, {"hostname": "10.1.2.3", "port": "3389"}, "a"))
    drawn = {i[2] for i in sent if i[0] == "cfill"}
    assert layer in drawn and drawn <= {layer}, sent


def test_rdp_announces_its_own_parameters():
    async def args() -> tuple[str, ...]:
        async with GuacdStandin(expect_violations=True) as guacd:  # it hangs up during the handshake
            reader, writer = await asyncio.open_connection("127.0.0.1", guacd.port)
            writer.write(encode("select", "rdp").encode())
            got = [i for i, _ in ByteParser().feed(await reader.read(65536))]
            writer.close()
            return got[0]

    announced = asyncio.run(args())
    assert {"security", "ignore-cert", "cert-fingerprints", "resize-method"} <= set(announced)
    assert "host-key" not in announced


def test_typing_exit_ends_the_session_cleanly():
    sent, _ = asyncio.run(connect_as("ssh", ssh(), "exit\n"))
    assert sent[-1] == ("disconnect",) and not any(i[0] == "error" for i in sent)
