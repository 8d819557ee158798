"""The gateway's limits before and around authentication, through real uvicorn and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.guacd_standin.harness import (
    ORIGIN,
    ConsoleBrowser,
    GuacBrowser,
    aio,
    relayed,
    running_gateway,
    ticket,
)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


async def raw(base: str, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the gateway from ``source`` (any 127.x address works on Linux)."""
    return await asyncio.open_connection("127.0.0.1", port_of(base), local_addr=(source, 0))


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent until it closed; fails if it is still open after ``within`` s."""
    data = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def refused(reader: asyncio.StreamReader) -> bool:
    """Reset (or closed) by the gateway at once, without a byte of answer."""
    try:
        return await closed_by_server(reader, 2) == b""
    except ConnectionResetError:
        return True


async def healthz(base: str, source: str = "127.0.0.1") -> bytes:
    reader, writer = await raw(base, source)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
    try:
        return await closed_by_server(reader, 5)
    finally:
        writer.close()


@aio(60)
async def test_no_ping_is_echoed_before_the_ticket_and_the_socket_closes():
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base) as browser:  # the tunnel UUID arrived
            await browser.send("", "ping", "42")
            with pytest.raises(ConnectionClosed):  # no echo: the next thing is the close
                await asyncio.wait_for(browser.ws.recv(), 5)
            assert browser.ws.close_reason == "768"
        # A ticket with a ping in the same message is not "only the ticket" either.
        async with GuacBrowser.open(base) as browser:
            await browser.ws.send("0.,6.ticket," + f"{len(ticket())}.{ticket()};" + "0.,4.ping,2.42;")
            assert await browser.closed() == "768"
        assert guacd.sessions == []


@aio(60)
async def test_an_oversized_message_before_the_ticket_closes_the_socket():
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base) as browser:
            await browser.ws.send("0.,6.ticket," + "20000." + "A" * 20000 + ";")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(browser.ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
        # A real ticket of the same size would fit after a smaller limit is lifted: a normal one works.
        async with GuacBrowser.open(base) as browser:
            await browser.present(ticket())
            await guacd.session()
        assert len(guacd.sessions) == 1


@aio(60)
async def test_a_smaller_ticket_limit_refuses_a_normal_ticket():
    async with running_gateway(ticket_max_bytes="1024") as base, GuacBrowser.open(base) as browser:
        await browser.present(ticket(private_key="K" * 2000))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(browser.ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def paste(browser: ConsoleBrowser, size: int) -> None:
    """One keystroke message of ``size`` bytes, read raw by the lab (a pty line holds only 4 KiB)."""
    await browser.type(f"stty raw -echo; head -c {size} | wc -c | sed 's/^/got-/'; stty sane\r")
    await asyncio.sleep(0.5)
    await browser.type("x" * size)


@aio(60)
async def test_after_the_ticket_larger_messages_pass_up_to_the_message_limit(sshd):
    fields = dict(host=sshd.host, port=sshd.port, username=sshd.username, private_key=sshd.private_key)
    size = 30_000  # > the 16 KiB allowed before the ticket
    async with (
        running_gateway(modes="console") as base,
        ConsoleBrowser.open(base, ticket(**fields)) as browser,
    ):
        await browser.ready()
        await paste(browser, size)
        await browser.wait_for(f"got-{size}".encode(), timeout=30)
    async with (
        running_gateway(modes="console", max_message_bytes="16384") as base,
        ConsoleBrowser.open(base, ticket(**fields)) as browser,
    ):
        await browser.ready()
        await paste(browser, size)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(browser.ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@aio(60)
async def test_per_address_cap_on_direct_connections():
    async with running_gateway(max_connections_per_address="3", forwarded_allow_ips="") as base:
        held = [await raw(base) for _ in range(3)]
        reader, writer = await raw(base)
        assert await refused(reader)
        assert (await healthz(base, "127.0.0.2")).startswith(b"HTTP/1.1 200")  # another address is served
        held[0][1].close()
        await asyncio.sleep(0.2)
        assert (await healthz(base)).startswith(b"HTTP/1.1 200")  # a slot came free
        for _, w in [*held[1:], (reader, writer)]:
            w.close()


def proxied(base: str, client: str):
    """A websocket the trusted proxy (127.0.0.1) opens for ``client``, named in X-Forwarded-For."""
    url = base.replace("http", "ws", 1) + "/guac/lab-a/ws"
    return connect(url, subprotocols=["guacamole"], origin=ORIGIN,  # type: ignore[list-item,arg-type]
                   additional_headers={"X-Forwarded-For": client})


async def accepted(ws) -> bool:
    """The tunnel's UUID arrived (True), or the gateway closed the socket with 797 (False)."""
    try:
        return (await asyncio.wait_for(ws.recv(), 5)).startswith("0.,36.")
    except ConnectionClosed:
        assert ws.close_reason == "797"
        return False


@aio(60)
async def test_per_address_cap_uses_the_client_a_trusted_proxy_names_an_ipv6_one_by_its_64():
    """One host with a /64 cannot open the cap's worth from each of its addresses; an IPv4 client is one."""
    async with (
        running_gateway(max_connections_per_address="2", forwarded_allow_ips="127.0.0.1") as base,
        proxied(base, "2001:db8:1:2::1") as one,
        proxied(base, "2001:db8:1:2:ffff::9") as two,
    ):
        assert await accepted(one) and await accepted(two)
        async with proxied(base, "2001:db8:1:2:abcd::1") as third:  # a third /128 of the same /64
            assert not await accepted(third)
        async with proxied(base, "2001:db8:1:3::1") as neighbour:  # the next /64: another client
            assert await accepted(neighbour)
        async with proxied(base, "::ffff:203.0.113.7") as v4, proxied(base, "203.0.113.7") as same:
            assert await accepted(v4) and await accepted(same)  # one IPv4 client, however written
            async with proxied(base, "203.0.113.7") as third_v4:
                assert not await accepted(third_v4)
            async with proxied(base, "203.0.113.8") as other:  # another learner behind the same proxy
                assert await accepted(other)
    async with (
        running_gateway(max_connections_per_address="2", forwarded_allow_ips="127.0.0.1",
                        ipv6_client_prefix="128") as base,
        proxied(base, "2001:db8:1:2::1") as one,
        proxied(base, "2001:db8:1:2::2") as two,
        proxied(base, "2001:db8:1:2::3") as three,
    ):
        assert [await accepted(ws) for ws in (one, two, three)] == [True, True, True]


@aio(60)
async def test_sockets_waiting_for_their_ticket_have_a_smaller_cap_per_proxied_client():
    async with relayed(max_pending_per_address="2", forwarded_allow_ips="127.0.0.1") as (guacd, base):
        client = {"additional_headers": {"X-Forwarded-For": "2001:db8::7"}}
        async with GuacBrowser.open(base, **client) as first, GuacBrowser.open(base, **client):
            async with proxied(base, "2001:db8::8") as third:  # the same /64, no ticket yet: too many
                assert not await accepted(third)
            await first.present(ticket())
            await guacd.session()  # the first is in: it no longer waits for its ticket
            async with proxied(base, "2001:db8::9") as fourth:
                assert await accepted(fourth)
            async with proxied(base, "2001:db8:0:1::9") as elsewhere:  # another client was never held up
                assert await accepted(elsewhere)


@aio(60)
async def test_caps_before_the_ticket_on_direct_connections():
    async with running_gateway(max_pending_per_address="2", max_pending_connections="3",
                               forwarded_allow_ips="") as base:
        held = [await raw(base, "127.0.0.2") for _ in range(2)]
        reader, _ = await raw(base, "127.0.0.2")
        assert await refused(reader)  # the address's two before the ticket
        held.append(await raw(base, "127.0.0.3"))
        reader, _ = await raw(base, "127.0.0.4")
        assert await refused(reader)  # three in all before the ticket
        held[0][1].close()
        await asyncio.sleep(0.2)
        assert (await healthz(base, "127.0.0.4")).startswith(b"HTTP/1.1 200")
        for _, w in held[1:]:
            w.close()
    async with (
        relayed(max_pending_per_address="1", forwarded_allow_ips="") as (guacd, base),
        GuacBrowser.open(base) as first,
    ):
        await first.present(ticket())
        await guacd.session()
        async with GuacBrowser.open(base) as second:  # the first's ticket was accepted: room again
            await second.present(ticket())
            await guacd.session(1)


@aio(30)
async def test_trusting_every_proxy_is_warned_of_at_start(caplog):
    with caplog.at_level(logging.WARNING, logger="labxblock.gateway.limits"):
        async with running_gateway(forwarded_allow_ips="*") as base:
            assert (await healthz(base)).startswith(b"HTTP/1.1 200")
    assert "LABXBLOCK_GATEWAY_FORWARDED_ALLOW_IPS=* trusts X-Forwarded-For from any address" in caplog.text
    caplog.clear()
    async with running_gateway(forwarded_allow_ips="127.0.0.1"):
        pass
    assert "FORWARDED_ALLOW_IPS" not in caplog.text


@aio(60)
async def test_total_cap():
    async with running_gateway(max_connections="4", forwarded_allow_ips="") as base:
        held = [await raw(base, f"127.0.0.{i}") for i in range(2, 6)]
        reader, _ = await raw(base, "127.0.0.9")
        assert await refused(reader)
        held[0][1].close()
        await asyncio.sleep(0.2)
        assert (await healthz(base, "127.0.0.9")).startswith(b"HTTP/1.1 200")
        for _, w in held[1:]:
            w.close()


@aio(60)
async def test_slowloris_is_closed_at_the_header_deadline():
    async with running_gateway(header_timeout_seconds="1", forwarded_allow_ips="") as base:
        silent = await raw(base, "127.0.0.2")
        trickle_reader, trickle = await raw(base, "127.0.0.3")
        started = time.monotonic()

        async def drip() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-slow: " + b"a" * 100:
                    trickle.write(bytes([byte]))
                    await asyncio.sleep(0.1)

        dripping = asyncio.create_task(drip())
        assert (await healthz(base)).startswith(b"HTTP/1.1 200")  # others are served meanwhile
        await closed_by_server(silent[0], 3)
        await closed_by_server(trickle_reader, 3)
        assert time.monotonic() - started < 2.5
        dripping.cancel()
        # After an answer the next request's headers get the same deadline (keep-alive is not a loophole).
        reader, writer = await raw(base, "127.0.0.4")
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        assert (await reader.readuntil(b"ok\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # then nothing more, but keeps dribbling a byte
        started = time.monotonic()
        for _ in range(4):
            await asyncio.sleep(0.4)
            with contextlib.suppress(ConnectionError):
                writer.write(b"x")
        await closed_by_server(reader, 3)
        assert time.monotonic() - started < 3


@aio(60)
async def test_idle_keep_alive_connections_close_after_keep_alive_seconds():
    async with running_gateway(keep_alive_seconds="1", header_timeout_seconds="30") as base:
        reader, writer = await raw(base)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        await reader.readuntil(b"ok\n")
        started = time.monotonic()
        await closed_by_server(reader, 5)
        assert time.monotonic() - started < 2.5


@aio(60)
async def test_request_heads_over_max_header_bytes_are_refused():
    async with running_gateway(max_header_bytes="2048") as base:
        head = b"GET /healthz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncookie: "
        answers = []
        for size in (500, 4000):
            reader, writer = await raw(base)
            writer.write(head + b"c" * size + b"\r\n\r\n")  # in one write, which h11's own limit lets by
            answers.append(await closed_by_server(reader, 5))
            writer.close()
        assert answers[0].startswith(b"HTTP/1.1 200") and answers[1].startswith(b"HTTP/1.1 431")


@aio(60)
async def test_a_flood_of_tiny_messages_does_not_starve_healthz():
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base) as browser:
            await browser.present(ticket())
            await guacd.session()
            flood = "0.,4.ping,1.1;" * 4000  # 4,000 pings in each message
            echoes = 0

            async def receive() -> None:
                nonlocal echoes
                with contextlib.suppress(Exception):
                    while True:
                        echoes += sum(1 for i in await browser.receive(30) if i[:2] == ("", "ping"))

            receiving = asyncio.create_task(receive())
            started = time.monotonic()
            for _ in range(50):
                await browser.ws.send(flood)
            times = []
            for _ in range(5):
                t0 = time.monotonic()
                assert (await healthz(base)).startswith(b"HTTP/1.1 200")
                times.append(time.monotonic() - t0)
            await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
            receiving.cancel()
        # 200,000 pings were answered at most 4 times a second, and /healthz stayed quick.
        assert echoes <= 4 * elapsed + 2, (echoes, elapsed)
        assert max(times) < 1.0, times
