"""Choosing a provider for a lab: the author's order, each provider's capacity, under a lock.

The count of a provider's stacks and the placement are made while that
provider's ProviderLock row is locked, so concurrent launches cannot both take
the last free slot (on MariaDB; SQLite serialises writers anyway).
"""

from __future__ import annotations

from django.db import transaction

from labxblock.conf import get_settings
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, ProviderLock

# A placed lab holds a slot until its stack is known to be gone.
FREE_STATES = (State.DELETED,)


def occupancy(provider: str, *, course_run: str | None = None, lab_key: str | None = None) -> int:
    """Stacks a provider holds (for one lab of one course run when both are given)."""
    labs = Lab.objects.filter(provider=provider).exclude(state__in=FREE_STATES)
    if course_run is not None:
        labs = labs.filter(course_run=course_run, lab_key=lab_key)
    return labs.count()


def candidates(lab: Lab) -> list[tuple[str, int | None]]:
    """(provider, this lab's own capacity there) in the author's order, minus refusals and unknowns."""
    configured = get_settings().providers
    spec = lab.blueprint.spec if lab.blueprint_id else {"providers": [{"name": "default", "capacity": None}]}
    out = []
    for choice in spec["providers"]:
        name = choice["name"]
        if name in configured and name not in lab.tried_providers:
            out.append((name, choice.get("capacity")))
    return out


def has_room(provider: str, lab_capacity: int | None, lab: Lab) -> bool:
    site_capacity = get_settings().providers[provider].capacity
    if site_capacity is not None and occupancy(provider) >= site_capacity:
        return False
    return (
        lab_capacity is None
        or occupancy(provider, course_run=lab.course_run, lab_key=lab.lab_key) < lab_capacity
    )


def ensure_placed(lab: Lab) -> bool:
    """Give ``lab`` a provider if it needs one and one has room; False means it must wait.

    Call inside a transaction holding the lab's row lock. A lab that is placed
    already, or needs no stack (not wanted up, not requested), passes at once.
    """
    if lab.provider or lab.state != State.REQUESTED or lab.desired != Desired.UP:
        return True
    choices = candidates(lab)
    if not choices:
        return True  # nothing left to try: the lifecycle's queue deadline fails it visibly
    names = sorted(name for name, _ in choices)
    ProviderLock.objects.bulk_create([ProviderLock(name=n) for n in names], ignore_conflicts=True)
    assert transaction.get_connection().in_atomic_block
    # Locks in name order, so two launches never wait on each other crosswise.
    list(ProviderLock.objects.select_for_update().filter(name__in=names).order_by("name"))
    for name, lab_capacity in choices:
        if has_room(name, lab_capacity, lab):
            Lab.objects.filter(pk=lab.pk).update(provider=name)
            lab.provider = name
            return True
    return False
