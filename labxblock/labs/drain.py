"""Draining a provider before maintenance: the flag, and what it means for one lab.

A draining provider takes no new launches (``placement`` reads the flag from the
rows it locks anyway). Its labs are suspended by the operator's drain
(``labs.operator.drain``); at their next launch they resume where they are, or,
when the operator asked for moves and the lab's blueprint names another provider
that is not draining, they are rebuilt there (a reset: the learner starts afresh).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from labxblock.conf import get_settings
from labxblock.lifecycle import State
from labxblock.models import Lab, ProviderLock

MOVE_REASON = "moved off a draining provider"
# A lab is moved only from rest: a running lab is the learner's work in progress.
MOVABLE_STATES = (State.SUSPENDED, State.SUSPENDING)


@dataclass(frozen=True)
class DrainFlag:
    """One provider's drain flag as stored."""

    provider: str
    draining: bool
    moves: bool
    since: datetime | None


def set_flag(provider: str, *, draining: bool, moves: bool, now: datetime) -> DrainFlag:
    """Store whether ``provider`` is draining (and whether its labs move); call inside a transaction."""
    ProviderLock.objects.get_or_create(name=provider)
    since = now if draining else None
    row = ProviderLock.objects.select_for_update().get(name=provider)
    if row.draining and draining:
        since = row.draining_since  # draining already: keep when it began
    ProviderLock.objects.filter(name=provider).update(
        draining=draining, drain_moves=moves and draining, draining_since=since
    )
    return DrainFlag(provider, draining, moves and draining, since)


def flags() -> dict[str, DrainFlag]:
    """Every provider with a stored flag, draining or not."""
    return {
        row.name: DrainFlag(row.name, row.draining, row.drain_moves, row.draining_since)
        for row in ProviderLock.objects.all()
    }


def moves_off(lab: Lab) -> bool:
    """Should this lab, about to be woken, be rebuilt on another provider? (one query, at rest only)"""
    if not lab.provider or lab.state not in MOVABLE_STATES:
        return False
    stored = {row.name: row for row in ProviderLock.objects.all()}
    own = stored.get(lab.provider)
    if own is None or not (own.draining and own.drain_moves):
        return False
    choices = lab.blueprint.spec.get("providers", []) if lab.blueprint_id else []
    configured = get_settings().providers
    return any(
        c["name"] != lab.provider and c["name"] in configured
        and not (c["name"] in stored and stored[c["name"]].draining)
        for c in choices
    )
