"""The gateway's limits before and around authentication, through real uvicorn and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
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


@aio(60)
async def test_per_address_cap_uses_the_client_a_trusted_proxy_names():
    async with running_gateway(max_connections_per_address="2", forwarded_allow_ips="127.0.0.1") as base:
        url = base.replace("http", "ws", 1) + "/guac/lab-a/ws"

        def opened(client: str):
            return connect(url, subprotocols=["guacamole"], origin=ORIGIN,  # type: ignore[list-item,arg-type]
                           additional_headers={"X-Forwarded-For": client})

        async with opened("203.0.113.7") as one, opened("203.0.113.7") as two:
            for ws in (one, two):
                await ws.recv()  # the tunnel UUID: accepted
            async with opened("203.0.113.7") as third:
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(third.recv(), 5)
                assert third.close_reason == "797"
            async with opened("203.0.113.8") as other:  # another learner behind the same proxy
                assert (await other.recv()).startswith("0.,36.")


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
