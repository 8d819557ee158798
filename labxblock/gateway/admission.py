"""Before the ticket is accepted: one small message, read once, and nothing answered.

Both modes admit a browser the same way. Until the ticket is verified the
gateway reads exactly one message (at most ``ticket_max_bytes``, which the
websocket protocol enforces below us too), echoes nothing (not even a
Guacamole ``ping``) and closes at the ticket wait. Then: the ticket is opened
and claimed once, the message size limit is lifted, and the lab's address is
checked against the site's policy. Each refusal has its own close status and a
log line saying why; no log line holds a ticket.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from labxblock.gateway import wsock
from labxblock.gateway.destinations import LabAddressRefused
from labxblock.gateway.replay import GuardUnavailable
from labxblock.tickets import Ticket, TicketError

if TYPE_CHECKING:
    from labxblock.gateway.app import Gateway

log = logging.getLogger("labxblock.gateway")


class FirstMessageRefused(ValueError):
    """The first message is not a ticket message (or is too large)."""


async def first_message(ws: wsock.WebSocket, gateway: Gateway) -> str:
    """The one message read before the ticket is accepted (TimeoutError at the ticket wait)."""
    message = await asyncio.wait_for(ws.receive(), gateway.config.ticket_wait_seconds)
    if isinstance(message, bytes) or len(message.encode("utf-8")) > gateway.config.ticket_max_bytes:
        raise FirstMessageRefused("the first message must be a ticket message (text, small)")
    return message


async def admit(
    ws: wsock.WebSocket, gateway: Gateway, token: str, *, stack_name: str, tag: str, protocols: frozenset[str]
) -> tuple[Ticket, str] | None:
    """The verified ticket and the checked lab address, or None once the socket is closed with why."""
    try:
        ticket = await gateway.verify(token, stack_name=stack_name)
        if ticket.protocol not in protocols:
            raise TicketError(f"this mode cannot show {ticket.protocol}")
    except TicketError as exc:
        log.warning("%s: ticket refused for stack %s: %s", tag, stack_name, exc)
        await ws.close(wsock.TICKET_REFUSED)
        return None
    except GuardUnavailable as exc:
        log.error("%s: %s; ticket refused", tag, exc)
        await ws.close(wsock.SERVER_ERROR)
        return None
    ws.authenticated()
    try:
        address = await gateway.lab_address(ticket, ws.scope)
    except LabAddressRefused as exc:
        log.warning("%s: learner %s stack %s refused: %s", tag, ticket.learner_id, stack_name, exc)
        await ws.close(wsock.LAB_ADDRESS_REFUSED)
        return None
    log.info(
        "%s: learner %s stack %s ticket %s… %s %s:%s%s",
        tag, ticket.learner_id, stack_name, ticket.ticket_id[:6], ticket.protocol, address, ticket.port,
        " read-only" if ticket.read_only else "",
    )  # fmt: skip
    return ticket, address
