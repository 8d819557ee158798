"""Single use across gateway processes: two ``labxblock-gateway`` processes, one ticket, one session."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.guacd_standin.harness import GuacBrowser, aio, gateway_process, ticket
from tests.guacd_standin.server import GuacdStandin
from tests.services.process import free_port

pytestmark = pytest.mark.redis


async def present(base: str, token: str) -> str:
    """Present ``token``; "ok" once guacd's first frame arrives, else the close status."""
    async with GuacBrowser.open(base) as browser:
        await browser.present(token)
        with contextlib.suppress(Exception):
            if any(i[0] == "sync" for i in await browser.receive(10)):
                return "ok"
        return await browser.closed()


async def race(bases: list[str], tokens: list[str]) -> list[list[str]]:
    """Each ticket presented to every gateway at the same moment; the outcomes per ticket."""
    return [list(await asyncio.gather(*(present(base, token) for base in bases))) for token in tokens]


@contextlib.contextmanager
def two_gateways(tmp_path, guacd: GuacdStandin, **env: str):
    with (
        gateway_process(tmp_path / "a.log", guacd=f"127.0.0.1:{guacd.port}", **env) as (a, _),
        gateway_process(tmp_path / "b.log", guacd=f"127.0.0.1:{guacd.port}", **env) as (b, _),
    ):
        yield [a, b]


@aio(120)
async def test_a_ticket_opens_one_session_across_processes_sharing_redis(redis_server, tmp_path):
    async with GuacdStandin() as guacd:
        with two_gateways(tmp_path, guacd, redis_url=redis_server.url) as bases:
            outcomes = await race(bases, [ticket() for _ in range(8)])
    assert all(sorted(o) == ["771", "ok"] for o in outcomes), outcomes
    assert len(guacd.sessions) == 8


@aio(120)
async def test_without_redis_each_process_guards_only_itself(tmp_path):
    # Why the setting exists: the in-process guard lets the other process accept the same ticket.
    async with GuacdStandin() as guacd:
        with two_gateways(tmp_path, guacd) as bases:
            outcomes = await race(bases, [ticket() for _ in range(3)])
    assert all(o == ["ok", "ok"] for o in outcomes), outcomes


@aio(60)
async def test_an_unreachable_redis_refuses_tickets(tmp_path):
    async with GuacdStandin() as guacd:
        dead = f"redis://127.0.0.1:{free_port()}/0"
        env = {"guacd": f"127.0.0.1:{guacd.port}", "redis_url": dead}
        with gateway_process(tmp_path / "gw.log", **env) as (base, _):
            assert await present(base, ticket()) == "512"
        assert guacd.sessions == []
    log = (tmp_path / "gw.log").read_text()
    assert "the shared replay guard (Redis) did not answer" in log and dead not in log
