"""Warm pools: stacks of a lab built ahead, so a learner's first launch waits only for a resume.

A pool's stacks are ordinary ``Lab`` rows with no learner and ``pool`` set, driven by the
lifecycle like any lab: created and probed (desired up), then suspended or kept
running (the pool's ``keep``). Their outputs and secrets are stored as any lab's.

- ``tend`` (every reconcile tick, on the database alone) keeps each pool at its size
  while its schedule is on and empties it when it is off; stacks of an old template,
  failed stacks and stacks of a shrunk or removed pool are deleted. New rows are
  placed and created by the same tick (they count against capacity like any lab).
- ``claim`` (a learner's launch, when they have no lab) re-assigns one pool row to the
  learner: the best-prepared first, with a compare-and-set on ``learner IS NULL`` under
  a row lock that other claims skip (``SKIP LOCKED`` on MariaDB; SQLite serialises
  writers), so no two learners ever get the same stack. The usual launch then wakes it.

Pool time is not the learner's: a pool stack's events carry no learner and ``pool=True``
(usage reports show it as pool time), and its up-time is in no learner's time budget; from
the claim on both are the learner's (``budgets.claimed``: the budget counts from the claim,
with what the learner's earlier stack of the lab had used; a claim made ahead of the learner
by a hidden block counts from their arrival). A learner whose lab time is used up claims
nothing. A pool's stacks run the lab's lifecycle scripts as any lab does: set up when built,
so a claimed stack is set up before the learner sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, OperationalError, connection, transaction

from labxblock.conf import get_settings
from labxblock.labs import budgets, hooks
from labxblock.labs.specs import LabSpec, blueprint_digest
from labxblock.lifecycle import Desired, State
from labxblock.models import Blueprint, Lab, LabEvent, WarmPool, derive_stack_name
from labxblock.models_pool import POOLED_CACHE_KEY
from labxblock.pool_schedule import ScheduleError

log = logging.getLogger(__name__)

ACTOR = "pool"
CLAIMED = "claimed from the warm pool"
POOLED_CACHE_SECONDS = 60
FILL_PER_TICK = 25  # new stacks per pool and tick: a large pool fills over a few seconds, not in one burst
# Claimed in this order: ready at once, then a resume away, then whatever is on its way.
CLAIM_ORDER: tuple[tuple[State, ...], ...] = (
    (State.READY,),
    (State.SUSPENDED,),
    (State.SUSPENDING, State.STARTING, State.RESUMING, State.CREATING),
)
# Removed first when a pool shrinks: the least work lost.
_SHRINK_ORDER = (State.REQUESTED, State.CREATING, State.STARTING, State.RESUMING, State.READY,
                 State.SUSPENDING, State.SUSPENDED)
_ROW_FIELDS = ("id", "learner_id", "pool_id", "blueprint_id", "state", "desired", "stack_name",
               "course_run", "lab_key", "provider")
_BUILD_KEYS = ("providers", "parameters", "key_type", "hooks")  # hooks: a stack is set up by its scripts


def build_digest(spec: dict[str, Any]) -> str:
    """What a blueprint builds in the cloud (templates, parameters, key type, the scripts that set it
    up), not how it is shown: two blueprints that differ only in the learner's port or protocol build
    the same stack."""
    return blueprint_digest({key: spec.get(key) for key in _BUILD_KEYS})


# --- claims -----------------------------------------------------------------------------------


def claim(user: Any, spec: LabSpec, blueprint: Blueprint, now: datetime, actor: str,
          stale_id: int | None = None, *, ahead: bool = False) -> bool:
    """Give the learner a stack from the lab's warm pool; True if they now have one.

    For a learner with no lab of this key, or whose lab ``stale_id`` has no stack (deleted):
    that row gives way, and its time budget goes with the learner to the stack (one used up: no
    claim). ``ahead``: a hidden block claims for the learner, whose budget waits for them. A pool
    whose template is not the launched one learns it here
    (``tend`` then replaces its stacks) and hands out nothing: a pool stack is never given
    out with an old template.
    """
    if (spec.course_run, spec.lab_key) not in pooled_labs():
        return False  # most labs have no pool: known without a query
    pool = WarmPool.objects.filter(course_run=spec.course_run, lab_key=spec.lab_key).select_related(
        "blueprint").first()
    if pool is None:
        return False
    if pool.blueprint is None or build_digest(pool.blueprint.spec) != build_digest(blueprint.spec):
        WarmPool.objects.filter(pk=pool.pk).update(blueprint=blueprint)
        return False
    try:
        with transaction.atomic():
            return _claim_locked(user, pool, blueprint, spec, (stale_id, ahead), now, actor)
    except IntegrityError:  # the learner's own row was made meanwhile (another tab): theirs stands
        return False
    except OperationalError as exc:  # a deadlock victim (MariaDB): the launch goes on without the pool
        log.info("labxblock: no claim from the pool of %s %s: %s", spec.course_run, spec.lab_key, exc)
        return False


def pooled_labs() -> frozenset[tuple[str, str]]:
    """(course run, lab key) of every pool, cached: a launch asks on every learner's first visit.

    A pool saved or deleted forgets the cache (``WarmPool.save``/``delete``); the timeout covers
    a site whose processes do not share a cache.
    """
    known = cache.get(POOLED_CACHE_KEY)
    if known is None:
        known = frozenset(WarmPool.objects.values_list("course_run", "lab_key"))
        cache.set(POOLED_CACHE_KEY, known, POOLED_CACHE_SECONDS)
    return known


def _claim_locked(user: Any, pool: WarmPool, blueprint: Blueprint, spec: LabSpec,
                  whose: tuple[int | None, bool], now: datetime, actor: str) -> bool:
    stale_id, ahead = whose
    stale = None
    if stale_id is not None:  # the learner's stackless row gives way to the stack they get: locked first
        stale = Lab.objects.select_for_update().filter(pk=stale_id, state=State.DELETED).first()
        if stale is None or budgets.would_refuse(stale, spec.block_id, spec.time_budget_seconds, now):
            return False  # a stack came back meanwhile, or their lab time is used up: no stack for them
    candidates = Lab.objects.filter(pool=pool, learner__isnull=True, blueprint_id=pool.blueprint_id)
    candidates = candidates.exclude(desired=Desired.DELETED)
    lab = None
    for states in CLAIM_ORDER:  # PK order within each: the pool FK's index, no sort, one row locked
        lab = (candidates.filter(state__in=[s.value for s in states]).order_by("pk")
               .select_for_update(skip_locked=_skip_locked())
               .only(*_ROW_FIELDS, "outputs", "launched_at").first())
        if lab is not None:
            break
    if lab is None:
        return False
    if stale is not None:
        stale.delete()
    fields: dict[str, Any] = {
        "learner": user, "pool": None, "blueprint": blueprint, "stack_user": spec.stack_user,
        "protocol": spec.protocol, "launch_requested_at": now,
        # Ready at once, or timed from this claim: the pool's own build is no launch of the learner's.
        "launched_at": now if lab.state == State.READY else None,
        "launch_seconds": 0.0 if lab.state == State.READY else None,
        **budgets.claimed(lab.state, stale, now, ahead=ahead),  # pool time is nobody's budget
    }
    if "port" not in (lab.outputs or {}):
        fields["port"] = spec.port
    taken = Lab.objects.filter(pk=lab.pk, learner__isnull=True, pool=pool).exclude(
        desired=Desired.DELETED).update(**fields)
    if not taken:  # never while the row lock holds; if it did, the learner's old row must come back
        transaction.set_rollback(True)
        return False
    lab.learner_id = user.pk
    LabEvent.build(lab, actor=actor, reason=CLAIMED, from_state=lab.state, to_state=lab.state, at=now).save()
    return True


# --- tending ----------------------------------------------------------------------------------


@dataclass
class Tended:
    """What one pass of ``tend`` did."""

    added: int = 0
    removed: list[int] = field(default_factory=list)  # rows marked to be deleted
    suspended: int = 0
    woken: int = 0
    cleared: int = 0  # rows of deleted stacks forgotten


def tend(now: datetime) -> Tended:
    """Keep every pool at its size (or empty outside its schedule); on the database alone."""
    done = Tended()
    rows = list(Lab.objects.filter(learner__isnull=True).only(*_ROW_FIELDS))
    if not rows and not WarmPool.objects.filter(size__gt=0).exists():
        return done
    pools = {pool.pk: pool for pool in WarmPool.objects.select_related("blueprint")}
    by_pool: dict[int | None, list[Lab]] = {}
    for row in rows:
        by_pool.setdefault(row.pool_id if row.pool_id in pools else None, []).append(row)
    for pool_id, rows in [(None, by_pool.pop(None, [])), *((pk, by_pool.get(pk, [])) for pk in pools)]:
        try:
            if pool_id is None:
                _sweep(rows, now, done)  # strays: their pool was removed
            else:
                _tend_pool(pools[pool_id], rows, now, done)
        except OperationalError as exc:  # a deadlock victim: the next tick tends it again
            log.info("labxblock: warm pool %s not tended this tick: %s", pool_id, exc)
        except Exception:  # one pool's trouble (say, a time zone this host lacks) never stops the others
            log.exception("labxblock: warm pool %s not tended", pool_id)
    return done


def _skip_locked() -> bool:
    """Whether rows another transaction holds can be passed over (MariaDB from 10.6; else they are
    waited for, as Django raises NotSupportedError rather than ignore ``skip_locked``)."""
    return connection.features.has_select_for_update_skip_locked


def target(pool: WarmPool, now: datetime) -> int:
    """How many stacks the pool should hold now (none until its template is known)."""
    if pool.blueprint_id is None or not pool.parsed_schedule().active(now):
        return 0
    return pool.size


def _sweep(rows: list[Lab], now: datetime, done: Tended) -> None:
    """Stacks with no learner and no pool: delete them, and forget their rows once deleted."""
    _forget([r for r in rows if r.state == State.DELETED and r.desired != Desired.UP], done)
    live = [r for r in rows if r.desired != Desired.DELETED and r.state != State.DELETED]
    _mark(live, Desired.DELETED, "its warm pool was removed", now, done)


def _tend_pool(pool: WarmPool, rows: list[Lab], now: datetime, done: Tended) -> None:
    _forget([r for r in rows if r.state == State.DELETED and r.desired != Desired.UP], done)
    rows = [r for r in rows if r.desired != Desired.DELETED and r.state != State.DELETED]
    stale = [r for r in rows if r.blueprint_id != pool.blueprint_id]
    failed = [r for r in rows if r.state == State.FAILED and r not in stale]
    _mark(stale, Desired.DELETED, "the lab's template changed", now, done)
    _mark(failed, Desired.DELETED, "failed: replaced", now, done)
    live = [r for r in rows if r not in stale and r not in failed]
    wanted = target(pool, now)
    if len(live) > wanted:
        live.sort(key=lambda r: (_SHRINK_ORDER.index(State(r.state)), -r.pk))
        _mark(live[:len(live) - wanted], Desired.DELETED, "the warm pool shrank", now, done)
        live = live[len(live) - wanted:]
    elif len(live) < wanted:
        _add(pool, wanted, now, done)
    if pool.keep == WarmPool.Keep.SUSPENDED:  # built and answering first, then to rest
        ready = [r for r in live if r.state == State.READY and r.desired == Desired.UP]
        done.suspended += _mark(ready, Desired.SUSPENDED, "warm pool: at rest until claimed", now)
    else:
        resting = [r for r in live if r.desired == Desired.SUSPENDED]
        done.woken += _mark(resting, Desired.UP, "warm pool: kept running", now)


def _mark(rows: Sequence[Lab], desired: Desired, reason: str, now: datetime,
          done: Tended | None = None) -> int:
    """Set ``desired`` on those of ``rows`` still unassigned (a claim may have just taken one)."""
    if not rows:
        return 0
    with transaction.atomic():
        locked = list(Lab.objects.select_for_update(skip_locked=_skip_locked()).filter(
            pk__in=[r.pk for r in rows], learner__isnull=True).exclude(desired=desired).only(*_ROW_FIELDS))
        Lab.objects.filter(pk__in=[r.pk for r in locked]).update(desired=desired.value)
        for row in locked:
            row.desired = desired.value
        LabEvent.objects.bulk_create([
            LabEvent.build(r, actor=ACTOR, reason=reason, from_state=r.state, to_state=r.state, at=now)
            for r in locked
        ])
    if done is not None and desired is Desired.DELETED:
        done.removed.extend(r.pk for r in locked)
    return len(locked)


def _forget(rows: Iterable[Lab], done: Tended) -> None:
    """Delete the rows of pool stacks that are gone (their events stay, for usage)."""
    ids = [r.pk for r in rows]
    if ids:
        gone = Lab.objects.filter(pk__in=ids, learner__isnull=True, state=State.DELETED)
        done.cleared += gone.delete()[1].get("labxblock.Lab", 0)


def _add(pool: WarmPool, wanted: int, now: datetime, done: Tended) -> None:
    """New pool rows up to ``wanted`` (at most ``FILL_PER_TICK``), wanted up: the same tick places them
    and starts their creates. Counted again under the pool's row lock: two ticks that overlap (a slow
    one and the next) both saw the pool short, and only one may fill it."""
    spec = pool.blueprint.spec
    install_id = get_settings().install_id
    with transaction.atomic():
        list(WarmPool.objects.select_for_update().filter(pk=pool.pk).values_list("pk", flat=True))
        live = (Lab.objects.filter(learner__isnull=True, pool=pool, blueprint_id=pool.blueprint_id)
                .exclude(state__in=(State.DELETED, State.FAILED)).exclude(desired=Desired.DELETED).count())
        count = min(wanted - live, FILL_PER_TICK)
        if count <= 0:
            return
        new = [
            Lab(learner=None, pool=pool, course_run=pool.course_run, lab_key=pool.lab_key,
                stack_name=derive_stack_name(install_id), blueprint=pool.blueprint,
                stack_user=spec.get("stack_user") or "training", protocol=spec.get("protocol") or "ssh",
                port=spec.get("port"), desired=Desired.UP.value, state=State.REQUESTED.value,
                state_changed_at=now, launch_requested_at=now,
                hook_seconds=hooks.bounds(spec.get("hooks", ())))
            for _ in range(count)
        ]
        Lab.objects.bulk_create(new)
        made = Lab.objects.filter(stack_name__in=[lab.stack_name for lab in new]).only(*_ROW_FIELDS)
        LabEvent.objects.bulk_create([
            LabEvent.build(lab, actor=ACTOR, reason="warm pool: stack added", from_state="",
                           to_state=State.REQUESTED.value, at=now)
            for lab in made
        ])
    done.added += count


# --- what operators set and see ---------------------------------------------------------------


class PoolError(ValueError):
    """An operator's pool setting that cannot be stored; the message says why."""


def configure(*, course_run: str | None = None, lab_key: str | None = None, from_lab: int | None = None,
              size: int | None = None, keep: str | None = None, schedule: str | None = None,
              time_zone: str | None = None) -> WarmPool:
    """Create or change the pool of a course run's lab (given, or that of lab ``from_lab``).

    ``from_lab`` also gives the pool that lab's template at once; otherwise the pool learns
    it from the next launch of the lab (by anyone, course staff included). Settings not
    given keep their stored value.
    """
    blueprint_id = None
    if from_lab is not None:
        lab = Lab.objects.filter(pk=from_lab).only("course_run", "lab_key", "blueprint_id").first()
        if lab is None:
            raise PoolError(f"no lab with id {from_lab}")
        course_run, lab_key, blueprint_id = lab.course_run, lab.lab_key, lab.blueprint_id
    if not course_run or not lab_key:
        raise PoolError("give the course run and the lab key, or a lab of that lab key")
    if size is not None and size < 0:
        raise PoolError("the size must be 0 or more")
    if keep is not None and keep not in WarmPool.Keep.values:
        raise PoolError(f"keep must be one of {', '.join(WarmPool.Keep.values)}")
    with transaction.atomic():
        pool, _ = WarmPool.objects.select_for_update().get_or_create(course_run=course_run, lab_key=lab_key)
        changes = {"size": size, "keep": keep, "schedule": schedule, "time_zone": time_zone,
                   "blueprint_id": blueprint_id}
        for name, value in changes.items():
            if value is not None:
                setattr(pool, name, value)
        try:
            pool.save()
        except ScheduleError as exc:
            raise PoolError(str(exc)) from None
    return pool


def remove(course_run: str, lab_key: str) -> int:
    """Remove the lab's pool; its unassigned stacks are deleted by the next tick. Returns them."""
    pool = WarmPool.objects.filter(course_run=course_run, lab_key=lab_key).first()
    if pool is None:
        raise PoolError(f"no warm pool for {course_run} {lab_key}")
    stacks = Lab.objects.filter(pool=pool, learner__isnull=True).exclude(state=State.DELETED).count()
    pool.delete()  # its rows keep no pool and no learner: tend deletes them
    return stacks


@dataclass(frozen=True)
class PoolStatus:
    """A pool as ``pool list`` and the admin show it."""

    pool: WarmPool
    target: int  # what it should hold now
    counts: dict[str, int]  # unassigned stacks by state (of the current template)
    leaving: int  # stacks on their way out (old template, shrunk, failed)

    def record(self) -> dict[str, Any]:
        pool, counts = self.pool, self.counts
        building = sum(counts.get(s, 0) for s in ("requested", "creating", "starting", "resuming"))
        return {
            "course_run": pool.course_run, "lab_key": pool.lab_key, "size": pool.size, "keep": pool.keep,
            "schedule": pool.schedule or "always", "time_zone": pool.time_zone, "now": self.target,
            "template": pool.blueprint.digest[:12] if pool.blueprint else "(next launch)",
            "ready": counts.get("ready", 0),
            "suspended": counts.get("suspended", 0) + counts.get("suspending", 0),
            "building": building, "failed": counts.get("failed", 0), "leaving": self.leaving,
        }


STATUS_COLUMNS = ("course_run", "lab_key", "size", "keep", "schedule", "time_zone", "now", "template",
                  "ready", "suspended", "building", "failed", "leaving")


def status(now: datetime, pools: Sequence[WarmPool] | None = None) -> list[PoolStatus]:
    """Every pool (or those given) with what it holds now (two queries)."""
    if pools is None:
        pools = list(WarmPool.objects.select_related("blueprint").order_by("course_run", "lab_key"))
    counts: dict[int, dict[str, int]] = {pool.pk: {} for pool in pools}
    leaving: dict[int, int] = dict.fromkeys(counts, 0)
    current = {pool.pk: pool.blueprint_id for pool in pools}
    rows = Lab.objects.filter(pool__in=pools, learner__isnull=True).exclude(state=State.DELETED)
    fields = ("pool_id", "state", "desired", "blueprint_id")
    for pool_id, state, desired, blueprint_id in rows.values_list(*fields):
        if desired == Desired.DELETED or blueprint_id != current[pool_id]:
            leaving[pool_id] += 1
        else:
            counts[pool_id][state] = counts[pool_id].get(state, 0) + 1
    return [PoolStatus(pool, target(pool, now), counts[pool.pk], leaving[pool.pk]) for pool in pools]
