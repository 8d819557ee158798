"""What guacd is told about the lab, and how a session ends: through the relay, against the stand-in."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.guacd_standin.harness import GuacBrowser, aio, relayed, ticket
from tests.guacd_standin.server import FAILING_USER, LAB_HOST_KEY, GuacdStandin


async def open_session(guacd: GuacdStandin, base: str, token: str) -> tuple[str, list]:
    """Present ``token``; return guacd's host-key value and what the browser got until sync or disconnect."""
    async with GuacBrowser.open(base) as browser:
        await browser.present(token)
        session = await guacd.session()
        got = []
        async with asyncio.timeout(5):
            while not any(i[0] in {"sync", "disconnect"} for i in got):
                got += await browser.receive()
        return session.connect.get("host-key", ""), got


@pytest.mark.parametrize(
    "host_key",
    [LAB_HOST_KEY, f"lab.example.org {LAB_HOST_KEY}", f"[10.1.2.3]:2222 {LAB_HOST_KEY} comment"],
    ids=["bare", "known-hosts-other-name", "known-hosts-with-port"],
)
@aio(30)
async def test_guacd_gets_the_known_hosts_line_it_parses(host_key):
    async with relayed() as (guacd, base):
        given, got = await open_session(guacd, base, ticket(host_key=host_key))
        assert given == f"[10.1.2.3]:2222 {LAB_HOST_KEY}"  # the checked address, and the port (not 22)
        assert not any(i[0] == "error" for i in got), got
        assert "Host key match found for 10.1.2.3" in guacd.sessions[0].log


@aio(30)
async def test_port_22_gets_a_plain_host_line():
    async with relayed() as (guacd, base):
        given, _ = await open_session(guacd, base, ticket(host_key=LAB_HOST_KEY, port=22))
        assert given == f"10.1.2.3 {LAB_HOST_KEY}"


@aio(30)
async def test_a_wrong_host_key_is_refused_by_guacd():
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base) as browser:
            await browser.present(ticket(host_key=other))
            got = await browser.receive_until("disconnect")
            assert ("error", "Aborted. See logs.", "512") in got
            assert await browser.closed() == "512"
        assert any("does not match" in line for line in guacd.sessions[0].log)


@aio(30)
async def test_an_unreadable_host_key_never_reaches_guacd():
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base) as browser:
            await browser.present(ticket(host_key="ssh-ed25519 not-base64!"))
            assert await browser.closed() == "515"
        assert guacd.sessions == []


@aio(30)
async def test_rdp_gets_lab_defaults_and_the_tickets_options():
    fingerprint = "sha256:" + ":".join(["ab"] * 32)
    async with relayed() as (guacd, base):
        await open_session(guacd, base, ticket(protocol="rdp", port=3389, display={}))
        await open_session(guacd, base, ticket(
            protocol="rdp", port=3389,
            display={"security": "nla", "ignore-cert": False, "cert-fingerprints": fingerprint},
        ))  # fmt: skip
    plain, pinned = (s.connect for s in guacd.sessions)
    keys = ("security", "ignore-cert", "resize-method", "cert-fingerprints")
    assert [plain[k] for k in keys] == ["any", "true", "display-update", ""]
    assert plain["hostname"] == "10.1.2.3" and plain["port"] == "3389"
    assert [pinned[k] for k in keys] == ["nla", "false", "display-update", fingerprint]


@aio(30)
async def test_typing_exit_ends_with_status_0():
    async with (
        relayed() as (guacd, base),
        GuacBrowser.open(base) as browser,
    ):
        await browser.present(ticket())
        await guacd.session()
        for char in "exit":
            await browser.send("key", ord(char), 1)
        await browser.send("key", 0xFF0D, 1)
        got = await browser.receive_until("disconnect")
        assert not any(i[0] == "error" for i in got)
        assert await browser.closed() == "0"


@aio(30)
async def test_when_the_page_hangs_up_on_a_login_error_the_log_keeps_guacds_status(caplog):
    caplog.set_level(logging.INFO, logger="labxblock.gateway")
    async with relayed() as (guacd, base):
        async with GuacBrowser.open(base) as browser:
            await browser.present(ticket(username=FAILING_USER))
            got = await browser.receive_until("error")
            assert ("error", "Aborted. See logs.", "769") in got
        # Like the JS client, the browser left on the error, before guacd's disconnect.
        await asyncio.wait_for(guacd.sessions[0].closed.wait(), 5)
        await asyncio.sleep(0.2)
    closes = [r.getMessage() for r in caplog.records if "closed with status" in r.getMessage()]
    assert closes and closes[-1].endswith("status 769"), closes


@pytest.mark.parametrize(
    ("host", "port", "allowed", "why"),
    [
        ("169.254.169.254", 22, "0.0.0.0/0", "link-local (cloud metadata)"),
        ("127.0.0.1", 22, "10.0.0.0/8", "loopback"),
        ("10.1.2.3", 22, "10.1.0.0/16,10.0.0.0/8", None),  # allowed: the control case
        ("10.1.2.3", 22, "192.168.0.0/16", "outside the allowed networks"),
        ("127.0.0.1", "guacd", "127.0.0.0/8", "own endpoint"),
        ("127.0.0.1", "gateway", "127.0.0.0/8", "own endpoint"),
    ],
    ids=["metadata", "loopback", "allowed", "outside", "guacd-itself", "gateway-itself"],
)
@aio(30)
async def test_guacd_is_never_sent_to_a_refused_lab_address(host, port, allowed, why, caplog):
    caplog.set_level(logging.INFO, logger="labxblock.gateway")
    async with relayed(allowed_networks=allowed) as (guacd, base):
        port = {"guacd": guacd.port, "gateway": int(base.rsplit(":", 1)[1])}.get(port, port)
        async with GuacBrowser.open(base) as browser:
            await browser.present(ticket(host=host, port=port))
            if why is None:
                assert (await guacd.session()).connect["hostname"] == host
                return
            assert await browser.closed() == "516"
        assert guacd.sessions == []
    assert any(why in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


@aio(30)
async def test_a_name_is_resolved_once_and_guacd_gets_the_checked_address():
    async with relayed(allowed_networks="127.0.0.0/8,::1/128") as (guacd, base):
        await open_session(guacd, base, ticket(host="localhost", port=2222))
        assert guacd.sessions[0].connect["hostname"] in {"127.0.0.1", "::1"}
