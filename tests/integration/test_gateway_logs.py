"""At LOG_LEVEL=debug the gateway logs no frame, no typed password and no ticket."""

from __future__ import annotations

import asyncio
import re

from tests.guacd_standin.harness import ConsoleBrowser, GuacBrowser, aio, gateway_process, ticket
from tests.guacd_standin.server import GuacdStandin

PASSWORD = "Tr0ub4dor&3-unique-7e1f"


def pieces(token: str) -> list[str]:
    """Slices of a ticket, past the prefix every Fernet token shares ("gAAAAA" + time)."""
    return [token[i : i + 16] for i in range(12, len(token) - 16, 8)]


async def type_a_password(base: str, sshd) -> str:
    token = ticket(host=sshd.host, port=sshd.port, username=sshd.username, private_key=sshd.private_key)
    async with ConsoleBrowser.open(base, token) as browser:
        await browser.ready()
        # Quoted in two so that the echo of this line is not mistaken for the prompt itself.
        await browser.type("read -rs -p 'pass''word: ' secret; echo \"length-${#secret}\"\r")
        await browser.wait_for(b"password: ", timeout=30)
        await browser.type(PASSWORD + "\r")
        await browser.wait_for(f"length-{len(PASSWORD)}".encode(), timeout=30)
    return token


async def type_keys_through_guacd(base: str, guacd: GuacdStandin) -> str:
    token = ticket()
    async with GuacBrowser.open(base) as browser:
        await browser.present(token)
        session = await guacd.session()
        for char in PASSWORD:
            await browser.send("key", ord(char), 1)
        await browser.send("", "ping", "1700000000000")
        await browser.receive_until("sync")
    # The gateway tells guacd the browser left; a loaded machine may take a while (the stand-in checks it).
    async with asyncio.timeout(30):
        while not session.disconnect_received:
            await asyncio.sleep(0.05)
    return token


@aio(90)
async def test_debug_logs_hold_no_frame_password_or_ticket(sshd, tmp_path):
    log = tmp_path / "gateway.log"
    async with GuacdStandin() as guacd:
        with gateway_process(log, log_level="debug", guacd=f"127.0.0.1:{guacd.port}") as (base, _pid):
            tokens = [await type_a_password(base, sshd), await type_keys_through_guacd(base, guacd)]
    text = log.read_text()
    assert " DEBUG " in text, "the gateway did not log at debug level: the test would prove nothing"
    assert "learner learner-a stack lab-a" in text  # the sessions were logged, without their contents
    assert PASSWORD not in text
    # No key event ("5.key,3.116,1.1;") either; a log line's milliseconds (",116 DEBUG") may hold the digits.
    assert not re.search(r"(?<![\d.])3\.116(?![\d.])", text)
    for token in tokens:
        leaked = [p for p in pieces(token) if p in text]
        assert not leaked, f"part of a ticket reached the log: {leaked[:2]}"
    assert "ping" not in text
