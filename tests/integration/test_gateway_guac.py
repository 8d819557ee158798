"""The guac relay through a real websocket client, against the guacd stand-in."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import InvalidStatus

from tests.guacd_standin.harness import GuacBrowser, aio, gateway_process, relayed, running_gateway, ticket
from tests.guacd_standin.server import FAILING_USER, SSH_ARGS, VERSION, GuacdStandin


@aio(30)
async def test_full_session_follows_every_rule():
    async with relayed() as (guacd, base):
        # The browser also tries to pick the port and read-only: only the ticket counts.
        async with GuacBrowser.open(base, query="port=22&read-only=false") as browser:
            await browser.present(ticket(port=2200, read_only=False), 1280, 720, 120, "Europe/Paris")
            session = await guacd.session()
            assert session.protocol == "ssh" and session.version == VERSION
            assert len(session.connect) == len(SSH_ARGS)
            assert session.connect["hostname"] == "10.1.2.3"
            assert session.port == "2200" and session.read_only == ""
            assert session.connect["username"] == "training" and session.connect["private-key"] == "KEY"
            assert session.connect["font-size"] == "12"
            assert ("size", "1280", "720", "120") in session.handshake
            assert ("timezone", "Europe/Paris") in session.handshake
            assert [i[0] for i in await browser.receive_until("sync")] == ["size", "size", "move", "sync"]

            # Ping: echoed back unchanged, never forwarded to guacd.
            await browser.send("", "ping", "1700000000123")
            assert await browser.receive_until("") == [("", "ping", "1700000000123")]

            await browser.send("key", "65", "1")
            drawn = await browser.receive_until("sync")
            assert ("rect", "1", "65", "0", "1", "1") in drawn  # SSH draws in layer 1
            await browser.send("size", "800", "600")
            await browser.send("nop")
            await asyncio.sleep(0.1)
            assert ("size", "800", "600") in session.received
        # The browser left: guacd must hear "disconnect".
        await asyncio.wait_for(session.closed.wait(), 5)
        assert session.disconnect_received


@aio(90)
async def test_guacd_hears_disconnect_when_a_browser_leaves_while_guacd_is_still_drawing(tmp_path):
    # Keys the browser sent just before leaving are still being answered by guacd: the gateway
    # had unread data when it hung up, the kernel reset the connection, and the disconnect it had
    # just written was lost (one session in five; 1.5.5 then keeps the SSH session ~15 s).
    async with GuacdStandin() as guacd:
        with gateway_process(tmp_path / "gateway.log", guacd=f"127.0.0.1:{guacd.port}") as (base, _pid):
            for index in range(20):
                async with GuacBrowser.open(base) as browser:
                    await browser.present(ticket())
                    session = await guacd.session(index)
                    for _ in range(200):
                        await browser.send("key", 65, 1)
                    await browser.receive_until("sync")
                await asyncio.wait_for(session.closed.wait(), 10)
    lost = [s for s in guacd.sessions if not s.disconnect_received]
    assert not lost, f"{len(lost)} of 20 sessions ended without a disconnect"


@aio(30)
async def test_read_only_comes_from_the_ticket_and_input_is_dropped():
    async with (
        relayed() as (guacd, base),
        GuacBrowser.open(base) as browser,
    ):
        await browser.present(ticket(read_only=True))
        session = await guacd.session()
        assert session.read_only == "true"
        await browser.receive_until("sync")
        await browser.send("key", "65", "1")
        await browser.send("mouse", "1", "1", "1")
        await browser.send("clipboard", "0", "text/plain")
        await browser.send("sync", "1")
        await asyncio.sleep(0.2)
        assert [i[0] for i in session.received] == ["sync"]


@aio(30)
async def test_large_split_output_reaches_the_browser_as_whole_instructions():
    async with (
        relayed() as (guacd, base),
        GuacBrowser.open(base) as browser,
    ):
        await browser.present(ticket())
        session = await guacd.session()
        await browser.receive_until("sync")
        text = "é,;.€ " * 30 + "😀"
        burst = "".join(f"4.name,{len(text)}.{text};" for _ in range(100)) + "4.sync,1.7;"
        await session.send(burst, split_every=7)  # splits land inside characters too
        got = await browser.receive_until("sync")  # each message parsed strictly
        names = [i for i in got if i[0] == "name"]
        assert len(names) == 100
        assert names[0][1] == text[:-1] + "\ufffd"  # non-BMP replaced, lengths still right


@aio(30)
async def test_login_failure_status_reaches_the_browser():
    async with (
        relayed() as (_guacd, base),
        GuacBrowser.open(base) as browser,
    ):
        await browser.present(ticket(username=FAILING_USER))
        got = await browser.receive_until("disconnect")
        assert ("error", "Aborted. See logs.", "769") in got
        assert await browser.closed() == "769"


@pytest.mark.parametrize(
    ("make", "stack"),
    [
        (lambda: "gAAAAAforged" + "A" * 80, "lab-a"),
        (lambda: ticket(now=time.time() - 120), "lab-a"),
        (lambda: ticket(learner_id="learner-b", stack_name="lab-b"), "lab-a"),  # another learner's lab
    ],
    ids=["forged", "expired", "other-learner"],
)
@aio(30)
async def test_refused_tickets_never_reach_guacd(make, stack):
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base, stack) as browser:
            await browser.present(make())
            assert await browser.closed() == "771"  # not 769: that is guacd's failed lab login
        assert guacd.sessions == []


@aio(30)
async def test_replayed_ticket_is_refused():
    async with relayed() as (guacd, base):
        token = ticket()
        async with GuacBrowser.open(base) as browser:
            await browser.present(token)
            await guacd.session()
        async with GuacBrowser.open(base) as browser:
            await browser.present(token)
            assert await browser.closed() == "771"
        assert len(guacd.sessions) == 1


@aio(30)
async def test_a_missing_ticket_times_out():
    async with running_gateway(ticket_wait_seconds="1") as base, GuacBrowser.open(base) as browser:
        started = time.monotonic()
        assert await browser.closed() == "776"
        assert time.monotonic() - started < 3


@aio(30)
async def test_guacd_unreachable_is_upstream_not_found():
    async with running_gateway(guacd="127.0.0.1:1") as base, GuacBrowser.open(base) as browser:
        await browser.present(ticket())
        assert await browser.closed() == "519"


@aio(30)
async def test_malformed_browser_message_closes_and_disconnects_guacd():
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base) as browser:
            await browser.present(ticket())
            session = await guacd.session()
            await browser.ws.send("4.key,2.65")  # split instruction from the browser
            assert await browser.closed() == "768"
        await asyncio.wait_for(session.closed.wait(), 5)
        assert session.disconnect_received


@aio(30)
async def test_foreign_origin_and_missing_subprotocol_are_refused():
    from websockets.asyncio.client import connect

    async with running_gateway() as base:
        url = base.replace("http", "ws") + "/guac/lab-a/ws"
        with pytest.raises(InvalidStatus):
            async with connect(url, subprotocols=["guacamole"], origin="https://evil.test"):  # type: ignore[list-item,arg-type]
                pass
        with pytest.raises(InvalidStatus):
            async with connect(url, origin="http://gateway.test"):  # type: ignore[arg-type]
                pass
        with pytest.raises(InvalidStatus):
            async with connect(url.replace("/guac/", "/nomode/"), subprotocols=["guacamole"]):  # type: ignore[list-item]
                pass
