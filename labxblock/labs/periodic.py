"""The periodic sweeps: mark idle labs for suspension, expire unused labs, find orphan stacks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from labxblock.conf import get_settings
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent

log = logging.getLogger(__name__)
BATCH = 1000  # rows marked per statement: bounded locks and memory at any scale


def _mark(ids: list[int], desired: Desired, reason: str, actor: str, now: datetime) -> int:
    """Set ``desired`` on the rows still matching, and log why: one UPDATE, one INSERT."""
    if not ids:
        return 0
    with transaction.atomic():
        marked = Lab.objects.filter(pk__in=ids).exclude(desired=desired).update(desired=desired.value)
        events = [
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
            for lab in Lab.objects.filter(pk__in=ids).only(
                "pk", "learner_id", "stack_name", "course_run", "lab_key", "provider", "state"
            )
        ]
        LabEvent.objects.bulk_create(events)
    return marked


def mark_idle(now: datetime) -> int:
    """Labs nobody kept alive past their suspend timeout are to be suspended (the reconciler acts)."""
    total = 0
    while ids := list(
        Lab.objects.filter(desired=Desired.UP, idle_at__lt=now).values_list("pk", flat=True)[:BATCH]
    ):
        total += _mark(ids, Desired.SUSPENDED, "idle", "suspend-idle", now)
    return total


def mark_expired(now: datetime) -> int:
    """Labs unused past their delete_by are to be deleted. Use moves delete_by, so no lab in use goes."""
    total = 0
    while ids := list(
        Lab.objects.filter(delete_by__lt=now)
        .exclude(desired=Desired.DELETED)
        .values_list("pk", flat=True)[:BATCH]
    ):
        total += _mark(ids, Desired.DELETED, "unused", "reaper", now)
    return total


@dataclass(frozen=True)
class ListedStack:
    """A stack the provider listed under our tag (what the orphan sweep needs of it)."""

    name: str
    created_at: datetime | None


def orphans(provider: str, listed: Iterable[ListedStack], now: datetime) -> list[str]:
    """Listed stacks of ours that no live row owns, older than the grace period: to be deleted.

    A stack whose age the provider cannot tell is never taken for an orphan: deleting a
    learner's lab by mistake is worse than paying for a leaked one until someone looks.
    """
    grace = timedelta(seconds=get_settings().orphan_grace_seconds)
    old = {s.name for s in listed if s.created_at is not None and s.created_at < now - grace}
    if not old:
        return []
    owned = set(
        Lab.objects.filter(stack_name__in=old)
        .exclude(state=State.DELETED)
        .values_list("stack_name", flat=True)
    )
    found = sorted(old - owned)
    if found:
        log.warning("labxblock: %d orphan stack(s) on provider %s will be deleted", len(found), provider)
    return found
