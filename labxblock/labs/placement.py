"""Choosing providers for labs: the author's order, each provider's capacity, under a lock.

Stacks are counted and slots assigned while the providers' ProviderLock rows are
locked, so concurrent launches cannot both take the last free slot (on MariaDB;
SQLite serialises writers anyway). A batch of queued labs costs what one lab
does: one lock statement, one count per capacity that applies, one UPDATE per
provider chosen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction

from labxblock.conf import get_settings
from labxblock.lifecycle import Desired, State
from labxblock.models import Blueprint, Lab, ProviderLock

# A placed lab holds a slot until its stack is known to be gone.
FREE_STATES = (State.DELETED,)
_UNSPECIFIED = {"providers": [{"name": "default", "capacity": None}]}


def occupancy(provider: str, *, course_run: str | None = None, lab_key: str | None = None) -> int:
    """Stacks a provider holds (for one lab of one course run when both are given)."""
    labs = Lab.objects.filter(provider=provider).exclude(state__in=FREE_STATES)
    if course_run is not None:
        labs = labs.filter(course_run=course_run, lab_key=lab_key)
    return labs.count()


def candidates(lab: Lab, specs: Mapping[int, dict[str, Any]] | None = None) -> list[tuple[str, int | None]]:
    """(provider, this lab's own capacity there) in the author's order, minus refusals and unknowns.

    ``specs`` (blueprint id to spec) saves a query per lab when placing many.
    """
    configured = get_settings().providers
    if not lab.blueprint_id:
        spec = _UNSPECIFIED
    elif specs is not None:
        spec = specs[lab.blueprint_id]
    else:
        spec = lab.blueprint.spec
    return [
        (choice["name"], choice.get("capacity"))
        for choice in spec["providers"]
        if choice["name"] in configured and choice["name"] not in lab.tried_providers
    ]


def needs_placement(lab: Lab) -> bool:
    return not lab.provider and lab.state == State.REQUESTED and lab.desired == Desired.UP


class _Room:
    """Occupancy per provider and per (provider, lab): counted in the database once, when first
    asked, plus the slots this placement has taken and not yet written."""

    def __init__(self, draining: frozenset[str] = frozenset()) -> None:
        self.draining = draining  # the operator drains them: no new launches
        self.site_capacity = {name: conf.capacity for name, conf in get_settings().providers.items()}
        self.stored: dict[tuple[str, ...], int] = {}
        self.taken: Counter[tuple[str, ...]] = Counter()

    def _count(self, key: tuple[str, ...]) -> int:
        if key not in self.stored:
            if len(key) == 1:
                self.stored[key] = occupancy(key[0])
            else:
                self.stored[key] = occupancy(key[0], course_run=key[1], lab_key=key[2])
        return self.stored[key] + self.taken[key]

    def take(self, provider: str, lab_capacity: int | None, lab: Lab) -> bool:
        """Take a slot on ``provider`` for ``lab`` if both the site's and the lab's capacity allow."""
        if provider in self.draining:
            return False
        site, own = (provider,), (provider, lab.course_run, lab.lab_key)
        site_capacity = self.site_capacity[provider]
        if site_capacity is not None and self._count(site) >= site_capacity:
            return False
        if lab_capacity is not None and self._count(own) >= lab_capacity:
            return False
        self.taken.update((site, own))
        return True


def _lock(names: list[str]) -> frozenset[str]:
    """Lock the providers' rows, in name order so two placements never wait on each other crosswise.

    Returns the names of those being drained, read from the locked rows (no query of its own).
    """
    assert transaction.get_connection().in_atomic_block
    rows = ProviderLock.objects.select_for_update().filter(name__in=names).order_by("name")
    locked = list(rows)
    if len(locked) < len(names):  # a provider's first placement ever: make its row, then lock it
        ProviderLock.objects.bulk_create([ProviderLock(name=n) for n in names], ignore_conflicts=True)
        locked = list(rows.all())
    return frozenset(row.name for row in locked if row.draining)


def place(labs: Sequence[Lab]) -> set[int]:
    """Give every lab that needs a provider the first one with room; return the ids that may go ahead.

    Call inside a transaction holding the labs' row locks; labs are served in the order
    given. Labs placed already or needing no stack go ahead, and so does a lab with no
    provider left to try (the lifecycle's queue deadline fails it visibly). The rest are
    queued for capacity: a later pass tries again.
    """
    waiting = [lab for lab in labs if needs_placement(lab)]
    ahead = {lab.pk for lab in labs} - {lab.pk for lab in waiting}
    if not waiting:
        return ahead
    blueprint_ids = {lab.blueprint_id for lab in waiting if lab.blueprint_id}  # none: no query at all
    specs = dict(Blueprint.objects.filter(pk__in=blueprint_ids).values_list("pk", "spec"))
    choices = {lab.pk: candidates(lab, specs) for lab in waiting}
    ahead |= {pk for pk, options in choices.items() if not options}
    names = sorted({name for options in choices.values() for name, _ in options})
    if not names:
        return ahead
    room, chosen = _Room(_lock(names)), dict[str, list[int]]()
    for lab in waiting:
        for name, lab_capacity in choices[lab.pk]:
            if room.take(name, lab_capacity, lab):
                chosen.setdefault(name, []).append(lab.pk)
                lab.provider = name
                ahead.add(lab.pk)
                break
    for name, ids in chosen.items():
        Lab.objects.filter(pk__in=ids).update(provider=name)
    return ahead
