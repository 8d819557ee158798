"""The guacd stand-in fails loudly on each broken rule (else the gateway tests prove nothing)."""

from __future__ import annotations

import asyncio

import pytest

from labxblock.gateway.protocol import ByteParser, encode
from tests.guacd_standin.server import SSH_ARGS, VERSION, GuacdStandin

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
