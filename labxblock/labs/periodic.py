"""The periodic sweeps: mark idle labs for suspension, expire unused labs, find and delete orphan stacks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from labxblock.conf import get_settings
from labxblock.labs.calls import send_after_commit
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent

log = logging.getLogger(__name__)
DELETE_ORPHAN_TASK = "labxblock.tasks.delete_orphan"
BATCH = 1000  # rows marked per statement: bounded locks and memory at any scale


def mark(ids: list[int], desired: Desired, reason: str, actor: str, now: datetime) -> int:
    """Set ``desired`` on the rows still without it, and log why for each of them: one locking SELECT,
    one UPDATE, one INSERT. A row another pass marked meanwhile (both ticks mark idle and spent labs)
    is neither marked nor logged again."""
    if not ids:
        return 0
    with transaction.atomic():
        labs = list(
            Lab.objects.select_for_update().filter(pk__in=ids).exclude(desired=desired)
            .only("pk", "learner_id", "stack_name", "course_run", "lab_key", "provider", "state")
        )
        if not labs:
            return 0
        Lab.objects.filter(pk__in=[lab.pk for lab in labs]).update(desired=desired.value)
        LabEvent.objects.bulk_create([
            LabEvent(
                lab_id=lab.pk,
                learner_id=lab.learner_id,
                stack_name=lab.stack_name,
                course_run=lab.course_run,
                lab_key=lab.lab_key,
                provider=lab.provider,
                at=now,
                from_state=lab.state,
                to_state=lab.state,
                desired=desired.value,
                reason=reason,
                actor=actor,
            )
            for lab in labs
        ])
    return len(labs)


def mark_idle(now: datetime) -> int:
    """Labs nobody kept alive past their suspend timeout are to be suspended (the reconciler acts)."""
    total = 0
    while ids := list(
        Lab.objects.filter(desired=Desired.UP, idle_at__lt=now).values_list("pk", flat=True)[:BATCH]
    ):
        total += mark(ids, Desired.SUSPENDED, "idle", "suspend-idle", now)
    return total


def mark_expired(now: datetime) -> int:
    """Labs unused past their delete_by are to be deleted. Use moves delete_by, so no lab in use goes."""
    total = 0
    while ids := list(
        Lab.objects.filter(delete_by__lt=now)
        .exclude(desired=Desired.DELETED)
        .values_list("pk", flat=True)[:BATCH]
    ):
        total += mark(ids, Desired.DELETED, "unused", "reaper", now)
    return total


@dataclass(frozen=True)
class ListedStack:
    """A stack the provider listed under our tag (what the orphan sweep needs of it)."""

    name: str
    created_at: datetime | None
    state: State | None = None  # a cloud lists a deleted stack (DELETED) for a while after its delete


def orphans(provider: str, listed: Iterable[ListedStack], now: datetime) -> list[str]:
    """Listed stacks of ours that no live row owns, older than the grace period: to be deleted.

    A stack listed as deleted already is none of them. A stack whose age the provider cannot
    tell is never taken for an orphan: deleting a learner's lab by mistake is worse than
    paying for a leaked one until someone looks.
    """
    grace = timedelta(seconds=get_settings().orphan_grace_seconds)
    old = {
        s.name for s in listed
        if s.created_at is not None and s.created_at < now - grace and s.state is not State.DELETED
    }
    if not old:
        return []
    owned = set(
        Lab.objects.filter(stack_name__in=old)
        .exclude(state=State.DELETED)
        .values_list("stack_name", flat=True)
    )
    return sorted(old - owned)


def delete_orphans(provider: str, stacks: Mapping[str, Mapping[str, Any]], budget: int | None = None) -> int:
    """Send one delete job per orphan stack (name: the provider's state of it), at most ``budget`` of
    them (what the provider's ``actions_per_minute`` leaves now; the rest wait for the next audit),
    and say so."""
    names = sorted(stacks)
    now, later = (names, []) if budget is None else (names[:max(0, budget)], names[max(0, budget):])
    if now:
        log.warning("labxblock: deleting %d orphan stack(s) on provider %s: %s", len(now), provider,
                    ", ".join(now))
        args = [[provider, name, dict(stacks[name])] for name in now]
        send_after_commit(DELETE_ORPHAN_TASK, args, queue=get_settings().queues.calls)
    if later:
        log.warning("labxblock: %d more orphan stack(s) on provider %s wait for the next audit "
                    "(actions_per_minute): %s", len(later), provider, ", ".join(later))
    return len(now)
