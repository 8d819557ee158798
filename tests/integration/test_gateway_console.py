"""Console mode through a real websocket client against Debian's OpenSSH server."""

from __future__ import annotations

from labxblock.gateway.console import CHUNK, HIGH_WATER
from tests.guacd_standin.harness import ConsoleBrowser, aio, running_gateway, ticket


def lab_ticket(sshd, **overrides):
    fields = dict(
        host=sshd.host,
        port=sshd.port,
        username=sshd.username,
        private_key=sshd.private_key,
        host_key=sshd.host_key,
    )
    fields.update(overrides)
    return ticket(**fields)


@aio(60)
async def test_command_output_comes_back(sshd):
    async with (
        running_gateway(modes="console") as base,
        ConsoleBrowser.open(base, lab_ticket(sshd)) as browser,
    ):
        assert await browser.ready() is False
        await browser.type("echo hello-$((6*7))\r")
        await browser.wait_for(b"hello-42")


@aio(60)
async def test_read_only_ticket_input_changes_nothing(sshd, tmp_path):
    marker = tmp_path / "marker"
    async with running_gateway(modes="console") as base:
        async with ConsoleBrowser.open(base, lab_ticket(sshd, read_only=True)) as browser:
            assert await browser.ready() is True
            await browser.type(f"touch {marker}\r")
            await browser.drain(1.5)
        assert not marker.exists()
        # The same keystrokes with a read-write ticket do create it: the check above can fail.
        async with ConsoleBrowser.open(base, lab_ticket(sshd)) as browser:
            await browser.ready()
            await browser.type(f"touch {marker} && echo done-$((1+1))\r")
            await browser.wait_for(b"done-2")
        assert marker.exists()


@aio(60)
async def test_resize_reaches_the_pty(sshd):
    async with (
        running_gateway(modes="console") as base,
        ConsoleBrowser.open(base, lab_ticket(sshd)) as browser,
    ):
        await browser.ready()
        await browser.send(type="resize", cols=123, rows=45)
        await browser.type("echo size-$(stty size | tr ' ' x)\r")
        await browser.wait_for(b"size-45x123")


@aio(60)
async def test_runaway_output_is_flow_controlled(sshd):
    async with (
        running_gateway(modes="console") as base,
        ConsoleBrowser.open(base, lab_ticket(sshd)) as browser,
    ):
        await browser.ready()
        browser.auto_ack = False  # a page that cannot keep up
        await browser.type("yes flow-control-test\r")
        await browser.drain(2)
        stalled = len(browser.output)
        assert stalled <= HIGH_WATER + CHUNK, f"{stalled} bytes sent without acks"
        await browser.drain(1)
        assert len(browser.output) == stalled  # nothing more until the page acks
        await browser.send(type="ack", bytes=stalled)
        await browser.drain(1)
        assert len(browser.output) > stalled  # acks release more output
        await browser.send(type="ack", bytes=len(browser.output) - stalled)
        browser.auto_ack = True
        await browser.type("\x03")
        await browser.type("echo stopped-$((2+3))\r")
        await browser.wait_for(b"stopped-5", timeout=30)


@aio(60)
async def test_session_end_is_reported(sshd):
    async with (
        running_gateway(modes="console") as base,
        ConsoleBrowser.open(base, lab_ticket(sshd)) as browser,
    ):
        await browser.ready()
        await browser.type("exit 3\r")
        assert await browser.closed() == "0"


@aio(60)
async def test_refused_tickets(sshd):
    cases = {
        "forged": "gAAAAA" + "B" * 90,
        "other learner": lab_ticket(sshd, learner_id="learner-b", stack_name="lab-b"),
        "not ssh": lab_ticket(sshd, protocol="rdp"),
    }
    async with running_gateway(modes="console") as base:
        for name, token in cases.items():
            async with ConsoleBrowser.open(base, token) as browser:
                assert await browser.closed() == "771", name


@aio(60)
async def test_wrong_key_or_host_key_is_refused(sshd):
    from tests.services.sshd import _keypair

    other_private, other_public = _keypair()
    async with running_gateway(modes="console") as base:
        async with ConsoleBrowser.open(base, lab_ticket(sshd, private_key=other_private)) as browser:
            assert await browser.closed() == "769"
        async with ConsoleBrowser.open(base, lab_ticket(sshd, host_key=other_public)) as browser:
            assert await browser.closed() == "519"


@aio(60)
async def test_a_lab_address_outside_the_allowed_networks_is_not_contacted(sshd):
    async with (
        running_gateway(modes="console", allowed_networks="10.0.0.0/8") as base,
        ConsoleBrowser.open(base, lab_ticket(sshd)) as browser,  # sshd is on 127.0.0.1
    ):
        assert await browser.closed() == "516"


@aio(60)
async def test_a_known_hosts_line_works_as_the_host_key(sshd):
    line = f"[{sshd.host}]:{sshd.port} {sshd.host_key}"
    async with (
        running_gateway(modes="console") as base,
        ConsoleBrowser.open(base, lab_ticket(sshd, host_key=line)) as browser,
    ):
        await browser.ready()
        await browser.type("echo line-$((2*21))\r")
        await browser.wait_for(b"line-42")
