"""Observing the cloud: follow labs in flight, audit the rest now and then; never apply a stale answer.

The cloud's cost grows with work in flight, not with the number of labs:

- The reconcile tick starts an observation of a provider only while labs there are in
  flight (``start``; one at a time per provider, under a short lease). The observer
  (``tasks.observe``) reads the in-flight rows (``targets``), takes the provider's one
  list of stacks in progress, and reads one by one the in-flight stacks that list does
  not show (they just finished, failed or vanished), except those whose call has been
  with its worker for less than two thirds of the acceptance window (while all are, it
  sends nothing). Stacks in progress that no in-flight row expected (someone else
  suspended or deleted a lab) are read too (``suspects``).
- The audit (``tasks.audit``, from the reap tick) takes the slow, paginated full list
  for drift and orphans: at rest, the only traffic the cloud sees.

An observation applies to a row only if the row has not moved since the observer read
its stamp, which it does before asking the cloud (``apply``): a slower pass that
overlaps a newer one never applies its older answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from labxblock.conf import get_settings
from labxblock.labs import adoption, engine
from labxblock.labs.calls import Job, call_budget, send_after_commit
from labxblock.labs.learner import retrying_deadlocks
from labxblock.lifecycle import State
from labxblock.models import Lab, Lease

OBSERVE_TASK = "labxblock.tasks.observe"
AUDIT_TASK = "labxblock.tasks.audit"
# How long an observation may take before another may start: a lost one costs no more than this,
# (at most half the acceptance window, so a lost call is still noticed within its window).
OBSERVE_LEASE_SECONDS = 20
# Share of the acceptance window a call still with its worker goes without reads of its stack. A create
# request takes Heat 2-30 s under load, and a stack it is still validating is not there to read: on the
# rig, reading such labs from a third of the window on was 382 of Heat's 491 reads in a burst of 20
# launches (most answered "not found") and slowed Heat's own creates. A stack that is there is in the
# list of stacks in progress anyway; the reads are for calls whose worker died.
UNREAD_SHARE = 2 / 3
# Rows a list's answer can contradict: what each believes its stack is.
_AUDITED = {State.STARTING: State.READY, State.READY: State.READY, State.SUSPENDED: State.SUSPENDED}
_DRIFTABLE = (*_AUDITED, State.DELETED)  # FAILED stays as it is: it is sticky until the learner retries

Stamp = tuple[Any, ...]


@dataclass(frozen=True)
class Target:
    """A lab the observer looks at, with its row's stamp as it was before the cloud was asked."""

    lab_id: int
    stack_name: str
    stamp: Stamp = field(compare=False)  # (state, state_changed_at, call_issued_at)
    provider_state: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    read: bool = field(default=True, compare=False)  # read its stack when the busy list does not show it
    # (raw status, raw reason, deadline) when no call of the row waits to be seen taken, else None
    quiet: tuple[str, str, datetime | None] | None = field(default=None, compare=False)

    def same(self, obs: engine.Observation, now: datetime) -> bool:
        """Would this observation change nothing? The cloud still shows what the row believes, in the
        same words, and nothing waits on it: no call to see taken, no deadline passed, no stack to adopt."""
        if self.quiet is None or obs.state is not State(self.stamp[0]):
            return False
        raw_status, raw_reason, deadline = self.quiet
        adopts = bool(obs.provider_state) and not self.provider_state
        return ((obs.raw_status[:64], obs.reason[:2000]) == (raw_status, raw_reason)
                and (deadline is None or now < deadline) and not adopts)


_TARGET_FIELDS = ("pk", "stack_name", "state", "state_changed_at", "call_issued_at", "provider_state",
                  "call_accepted_at", "raw_status", "raw_reason", "deadline_at")


def _target(row: tuple[Any, ...]) -> Target:
    pk, name, state, changed_at, issued_at, provider_state, taken_at, raw_status, raw_reason, deadline = row
    pending = issued_at is not None and (taken_at is None or taken_at < issued_at)
    quiet = None if pending else (raw_status, raw_reason, deadline)
    return Target(pk, name, (state, changed_at, issued_at), provider_state or {}, quiet=quiet)


def _stamp(lab: Lab) -> Stamp:
    return (lab.state, lab.state_changed_at, lab.call_issued_at)


# --- leases: at most one observation (or audit) of a provider in flight -------------------------


def take_lease(key: str, now: datetime, seconds: float) -> datetime | None:
    """Take the lease ``key`` until ``now + seconds`` if it is free or has run out.

    Returns the holder's token (the lease's end, which no later taker can share: each takes it only
    once the last one's has passed), or None if someone else holds it.
    """
    until = now + timedelta(seconds=seconds)
    if Lease.objects.filter(Q(until__isnull=True) | Q(until__lt=now), key=key).update(until=until):
        return until
    try:
        with transaction.atomic():
            _, created = Lease.objects.get_or_create(key=key, defaults={"until": until})
    except IntegrityError:  # made by a racing tick just now: theirs
        return None
    return until if created else None


def renew_lease(key: str, token: datetime, now: datetime, seconds: float) -> datetime | None:
    """The holder of ``token`` starts its work: its lease runs ``seconds`` from ``now``, not from when
    the tick took it (the task may have waited in its queue). Returns the new token, or None if the
    lease is someone else's now (then that holder does the work)."""
    until = max(token, now + timedelta(seconds=seconds))
    if until != token and not Lease.objects.filter(key=key, until=token).update(until=until):
        return None
    if until == token and not Lease.objects.filter(key=key, until=token).exists():
        return None
    return until


def release_lease(key: str, token: datetime, forget: bool = False) -> bool:
    """Give the lease up, if it is still the one ``token`` was given for: once ours ran out, another
    holder's is never released by us. False if it was not ours any more. ``forget``: remove its row
    (a lease per lab, not to be kept once done)."""
    ours = Lease.objects.filter(key=key, until=token)
    return bool(ours.delete()[0] if forget else ours.update(until=None))


def leased(key: str, now: datetime, seconds: float) -> list[Any]:
    """Task arguments for work under the lease ``key`` (its token, as text), or none if it is held."""
    token = take_lease(key, now, seconds)
    return [] if token is None else [token.isoformat()]


def start(now: datetime) -> list[str]:
    """The tick's part: start observing each provider with labs in flight, unless one is under way.

    At rest (no lab in flight on a provider) this sends that provider nothing at all.
    """
    settings = get_settings()
    lease = lease_seconds()
    args = [
        [name, *token]
        for name in settings.providers
        if Lab.objects.filter(provider=name, state__in=engine.OBSERVED_STATES).exists()
        and (token := leased(f"observe:{name}", now, lease))
    ]
    # A message that waited longer than the lease is dropped: a newer one is on its way.
    send_after_commit(OBSERVE_TASK, args, queue=settings.queues.observe, expires=lease)
    return [name for name, _ in args]


def lease_seconds() -> float:
    return min(OBSERVE_LEASE_SECONDS, get_settings().acceptance_window_seconds / 2)


def start_audits(now: datetime) -> list[str]:
    """The reap tick's part: audit each provider (the full list), unless an audit is under way."""
    settings = get_settings()
    seconds = settings.reap_interval_seconds
    args = [[name, *token] for name in settings.providers if (token := leased(f"audit:{name}", now, seconds))]
    send_after_commit(AUDIT_TASK, args, queue=settings.queues.observe, expires=seconds)
    return [name for name, _ in args]


# --- what to look at ------------------------------------------------------------------------


def targets(provider: str, now: datetime) -> list[Target]:
    """The provider's labs in flight, stamped. A lab whose call is still with its worker needs no read
    of its own for two thirds of the acceptance window (``UNREAD_SHARE``): then it is read, so a call
    that landed though its worker died is seen before the window runs out."""
    window = timedelta(seconds=get_settings().acceptance_window_seconds * UNREAD_SHARE)
    rows = Lab.objects.filter(provider=provider, state__in=engine.OBSERVED_STATES)
    found = []
    for row in rows.values_list(*_TARGET_FIELDS).iterator(2000):
        target = _target(row)
        issued = row[4]
        found.append(replace(target, read=target.quiet is not None or now >= issued + window))
    return found


def suspects(provider: str, names: Iterable[str]) -> list[Target]:
    """Labs not in flight whose stacks a list showed in progress: read each before believing it.

    An adopted stack not yet seen tagged is none of them: it shows in our lists in progress only
    while the update that tags it runs (``labs.adoption``), and that is no drift.
    """
    rows = Lab.objects.filter(provider=provider, stack_name__in=list(names), state__in=_DRIFTABLE)
    found = rows.values_list(*_TARGET_FIELDS)
    return [_target(row) for row in found if adoption.UNTAGGED not in (row[5] or {})]


def audit_suspects(provider: str, listed: Mapping[str, State | None]) -> list[Target]:
    """Labs at rest whose stack the full list shows otherwise than they believe (or not at all).

    Adopted stacks the list now shows as their rows believe are tagged: their mark goes, and the
    lists see them from now on; one it shows in progress is being tagged, and is left alone.
    """
    adopted = adoption.untagged(provider, list(_AUDITED))
    adoption.tagged({pk: row for pk, row in adopted.items() if listed.get(row[0]) == _AUDITED[row[1]]})
    tagging = {pk for pk, (name, _, _) in adopted.items() if listed.get(name) is State.CREATING}
    rows = Lab.objects.filter(provider=provider, state__in=list(_AUDITED))
    odd = [pk for pk, name, state in rows.values_list("pk", "stack_name", "state").iterator(2000)
           if listed.get(name) != _AUDITED[State(state)] and pk not in tagging]
    found: list[Target] = []
    for start_at in range(0, len(odd), 1000):  # bounded IN lists
        batch = Lab.objects.filter(pk__in=odd[start_at:start_at + 1000], state__in=list(_AUDITED))
        found.extend(_target(row) for row in batch.values_list(*_TARGET_FIELDS))
    return found


# --- applying what was seen ---------------------------------------------------------------------


def apply(
    provider: str, seen: Mapping[Target, engine.Observation], now: datetime, actor: str = "observer"
) -> list[Job]:
    """Decide for each lab on what the cloud showed, if its row has not moved since it was stamped.

    Only the rows the observation may change are locked: most labs in flight are still at it.
    """
    seen = {target: obs for target, obs in seen.items() if not target.same(obs, now)}
    if not seen:
        return []
    by_id = {target.lab_id: (target, obs) for target, obs in seen.items()}

    def fresh(lab: Lab) -> engine.Observation | None:
        target, obs = by_id[lab.pk]
        return obs if _stamp(lab) == target.stamp else None  # moved since: this answer may be stale

    def decide() -> list[Job]:
        with transaction.atomic():
            rows = Lab.objects.select_for_update().filter(pk__in=list(by_id), provider=provider)
            budget = rate_budget(provider, now)
            return engine.decide_locked(rows.only(*engine.PASS_FIELDS), fresh, now, actor, budget)

    return retrying_deadlocks(decide)


def rate_budget(provider: str, now: datetime) -> int:
    """The suspends, resumes and deletes an observation may make on ``provider`` now: what the last
    minute's calls left of its ``actions_per_minute``, counted as the reconcile tick counts them
    (``calls.call_budget``). Calls an observation decides (reissues, deletes of failed stacks) keep to
    the same rate; one over it is decided again by a later observation."""
    settings = get_settings().providers.get(provider)
    return 0 if settings is None else call_budget(provider, settings.actions_per_minute, now)
