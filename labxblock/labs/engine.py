"""The engine's decisions for labs: decide on what is known, store it, hand out the jobs.

Labs whose call is at work in the cloud (and labs sent back to REQUESTED with a stack
perhaps still there) are decided only on an observation of their stack
(``labs.observe``). Every other lab's next step needs no news from the cloud: the
reconcile tick decides it on the database alone (``reconcile_provider``,
``place_queued``), and so does a learner's request (``step``). The cloud is never
asked about labs at rest.

A pass locks the rows it decides for and writes their changes in a few bulk
statements; a single lab (a learner's launch, a probe's answer) is stored with a
conditional UPDATE, so a click racing a pass never loses either: the loser's change
is simply decided again next pass. Every state change, counted failure and reissued
call appends a LabEvent. Jobs (one cloud call or one probe each) are sent to the
workers only after the transaction commits.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, Q

from labxblock import lifecycle
from labxblock.conf import get_settings
from labxblock.labs import hooks, placement
from labxblock.labs.calls import Job, call_budget, dispatch, send_after_commit
from labxblock.lifecycle import CALLS, OPERATIONS, Action, Decision, Desired, LabView, Reason, State
from labxblock.models import Lab, LabEvent, scrub, scrubbed

MAX_CHAIN = 4  # decisions taken in a row for one lab while no call is needed
RATE_LIMITED = frozenset({Action.SUSPEND, Action.RESUME, Action.DELETE})

# Rows with something left to do; everything else is settled and costs the pass nothing.
UNSETTLED = (
    Q(state__in=[s.value for s in lifecycle.TRANSITIONAL])
    | Q(state=State.READY, desired__in=[Desired.SUSPENDED, Desired.DELETED])
    | Q(state=State.SUSPENDED, desired__in=[Desired.UP, Desired.DELETED])
    | Q(state=State.DELETED, desired=Desired.UP)
    | Q(state=State.FAILED, desired=Desired.DELETED)
)
# Decided on an observation of the stack only (with a provider given: OPERATIONS and REQUESTED).
OBSERVED_STATES = (*sorted(OPERATIONS), State.REQUESTED)

# What a lab's own state says about its stack, for the labs decided on the database alone.
_BELIEVED: Mapping[State, State | None] = {
    State.REQUESTED: None,  # not placed yet: no stack anywhere
    State.STARTING: State.READY,
    State.READY: State.READY,
    State.SUSPENDED: State.SUSPENDED,
    State.DELETED: None,
    State.FAILED: State.FAILED,
}
# Why a call is made again: a counted failure, or a call that was lost.
RETRY_REASONS = frozenset(
    r for r in Reason if r.value.endswith(("_failed", "_timeout")) and r is not Reason.STACK_FAILED
) | {Reason.NOT_ACCEPTED}

__all__ = ["Job", "Observation", "apply", "call_budget", "dispatch", "send_after_commit", "step"]


@dataclass(frozen=True)
class Observation:
    """What the cloud said of one stack (a list or a read), or what the row believes (no raw status)."""

    state: State | None
    raw_status: str = ""
    reason: str = ""
    provider_state: Mapping[str, Any] = field(default_factory=dict)


def call_pending_since(lab: Lab) -> datetime | None:
    """When the row's last call was issued, if nobody has seen the cloud take it since."""
    issued, taken = lab.call_issued_at, lab.call_accepted_at
    return issued if issued is not None and (taken is None or taken < issued) else None


def view_of(lab: Lab) -> LabView:
    """The lifecycle's view of a row."""
    return LabView(
        desired=Desired(lab.desired),
        state=State(lab.state),
        deadline_at=lab.deadline_at,
        attempts=lab.attempts,
        next_attempt_at=lab.next_attempt_at,
        probe_ok=lab.probe_ok,
        jitter=(zlib.crc32(lab.stack_name.encode()) % 1000) / 1000,
        call_pending_since=call_pending_since(lab),
        call_issued_at=lab.call_issued_at,
        hook_seconds=hooks.seconds_due(lab),
        hook_until=lab.hook_until,
    )


def observed_only(lab: Lab) -> bool:
    """Is the lab decided on an observation of its stack only (a call at work, or a stack to adopt)?"""
    return State(lab.state) in OPERATIONS or (lab.state == State.REQUESTED and bool(lab.provider))


def believed(lab: Lab) -> Observation | None:
    """What the row says of its stack; None for a lab that only an observation may decide."""
    return None if observed_only(lab) else Observation(_BELIEVED[State(lab.state)])


def _fields_for_move(lab: Lab, decision: Decision, obs: Observation, now: datetime) -> dict[str, Any]:
    """Bookkeeping that goes with entering ``decision.state``."""
    new = decision.state
    fields: dict[str, Any] = {"state": new.value, "state_changed_at": now, "probe_ok": False}
    if new is State.REQUESTED and obs.state is None:
        # The stack is gone: forget it entirely, and let placement choose a provider afresh.
        fields.update(provider="", provider_state={}, outputs={}, ip="", port=None, tried_providers=[])
        fields.update(private_key="", password="", secret_outputs="", raw_status="")
        fields.update(raw_reason="", setup_done_at=None)  # a new stack is set up afresh
    elif new is State.STARTING and lab.state == State.RESUMING:
        fields["ip"] = ""  # read the outputs again: a resumed server may have a new address
    elif new is State.READY:
        fields["launched_at"] = lab.launched_at or now
        if lab.launch_requested_at:
            fields["launch_seconds"] = (now - lab.launch_requested_at).total_seconds()
            fields["launch_requested_at"] = None
    elif new is State.SUSPENDED:
        fields["suspended_at"] = now
    elif new is State.FAILED:
        # "<Reason>: <the cloud's words>": the learner is shown the first part, operators both.
        # The cloud's words may quote a template's secret: scrubbed like an event's reason.
        detail = obs.reason or lab.status_reason
        detail = scrubbed(lab.pk, detail) if detail else ""
        fields["status_reason"] = f"{decision.reason}: {detail}"[:2000] if detail else str(decision.reason)
    return fields


def _call_fields(lab: Lab, before: LabView, after: LabView, decision: Decision, now: datetime) -> dict:
    """The call bookkeeping that goes with ``decision``: a call issued, seen taken, or made again."""
    if decision.action in CALLS:
        fields: dict[str, Any] = {"call_issued_at": now, "call_accepted_at": None}
        if decision.reason in RETRY_REASONS:
            fields["reissues"] = lab.reissues + 1
        return fields
    if before.call_pending_since is not None and after.call_pending_since is None:
        return {"call_accepted_at": now}  # the cloud is at it, or the lab moved on
    return {}


def apply(
    lab: Lab,
    obs: Observation,
    now: datetime,
    actor: str,
    budget: list[int] | None = None,
    can_create: bool = True,
    events: list[LabEvent] | None = None,
    writes: list[tuple[Lab, dict[str, Any]]] | None = None,
) -> Job | None:
    """Decide for ``lab`` (a few steps while no call is needed), store it, return the job if any.

    ``budget`` is a one-element list of rate-limited calls still allowed this pass; a decision
    needing one when none is left is not stored, so the next pass takes it up again. So is a
    create when ``can_create`` is false (no provider has room yet). Events go to ``events``
    and row changes to ``writes`` for bulk statements when given (the caller must hold the
    row locks), else straight to the database. A decision that changes nothing writes
    nothing: most labs in a pass are just waiting for the cloud.
    """
    policy = get_settings().policy
    first = view = view_of(lab)
    fields: dict[str, Any] = {}
    steps: list[tuple[State, Decision, int]] = []  # (from, decision, attempts after) with a reason
    decision = lifecycle.decide(view, obs.state, now, policy)
    for _ in range(MAX_CHAIN):
        if decision.state is not None:
            fields.update(_fields_for_move(lab, decision, obs, now))
        if decision.reason is not None:
            steps.append((view.state, decision, decision.attempts))
        view = view.after(decision)
        if decision.action is not Action.NONE or decision.state is None:
            break
        if fields.get("provider") == "":
            break  # the stack is gone and the lab unplaced: placement chooses where it goes next
        decision = lifecycle.decide(view, obs.state, now, policy)
    if decision.action is Action.CREATE and not can_create:
        _start_queue_clock(lab, policy, now, writes)
        return None
    if budget is not None and decision.action in RATE_LIMITED:
        if budget[0] <= 0:
            return None
        budget[0] -= 1
    fields.update(deadline_at=view.deadline_at, attempts=view.attempts, next_attempt_at=view.next_attempt_at,
                  hook_until=view.hook_until)
    fields.update(_call_fields(lab, first, view, decision, now))
    if obs.raw_status:  # the cloud's own words, kept as it said them (a belief has none)
        fields.update(raw_status=obs.raw_status[:64], raw_reason=scrub(obs.reason, [])[:2000])
    if obs.state is not None and obs.provider_state and not lab.provider_state:
        fields["provider_state"] = dict(obs.provider_state)  # adopt the stack the cloud has
    # Built before storing: a move to REQUESTED clears the provider the event must still name.
    new_events = [
        # Reasons here are the lifecycle's fixed words: nothing to scrub, no secret to load.
        LabEvent.build(lab, actor=actor, reason=str(step.reason), from_state=from_state.value,
                       to_state=(step.state or from_state).value, at=now, attempt=attempts)
        for from_state, step, attempts in steps
    ]
    changed = steps or any(getattr(lab, name) != value for name, value in fields.items())
    if changed and writes is not None:
        for name, value in fields.items():
            setattr(lab, name, value)
        writes.append((lab, fields))
    elif changed and not _store(lab, fields):
        return None
    if events is None:
        LabEvent.objects.bulk_create(new_events)
    else:
        events.extend(new_events)
    if decision.action is Action.NONE:
        return None
    return Job(lab.pk, decision.action, view.state, issued=fields.get("call_issued_at"))


def _start_queue_clock(
    lab: Lab, policy: lifecycle.Policy, now: datetime, writes: list[tuple[Lab, dict[str, Any]]] | None
) -> None:
    """A lab queued for capacity stays REQUESTED, but its wait is timed from the first pass that
    found no room: past the deadline the lifecycle fails it with a reason, never leaves it waiting."""
    if lab.state != State.REQUESTED or lab.deadline_at is not None:
        return
    fields = {"deadline_at": lifecycle.deadline_for(State.REQUESTED, now, policy.deadline_seconds)}
    if writes is None:
        _store(lab, fields)
    else:
        lab.deadline_at = fields["deadline_at"]
        writes.append((lab, fields))


def _store(lab: Lab, fields: dict[str, Any]) -> bool:
    """Write ``fields`` if nobody changed the row's state or desired value meanwhile."""
    changed = Lab.objects.filter(pk=lab.pk, state=lab.state, desired=lab.desired).update(**fields)
    if changed:
        for name, value in fields.items():
            setattr(lab, name, value)
    return bool(changed)


def step(lab_id: int, now: datetime, actor: str, *, send: bool = True) -> Job | None:
    """Advance one lab now, on what its row believes (no cloud call): a launch need not wait a pass.

    A lab only an observation may decide is left to the observer. With ``send=False`` the
    job is returned for the caller to carry out itself.
    """
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=lab_id).first()
        obs = believed(lab) if lab is not None else None  # before placement gives it a provider
        if lab is None or obs is None:
            return None
        placed = lab.pk in placement.place([lab])  # unplaced: queued for capacity, the pass tries again
        job = apply(lab, obs, now, actor, can_create=placed)
        if send:
            dispatch([job] if job else [])
    return job


# What a pass reads of a row: what the lifecycle and the bookkeeping need, nothing more.
PASS_FIELDS = (
    "id",
    "learner_id",
    "course_run",
    "lab_key",
    "provider",
    "stack_name",
    "state",
    "desired",
    "deadline_at",
    "attempts",
    "next_attempt_at",
    "probe_ok",
    "provider_state",
    "raw_status",
    "raw_reason",
    "status_reason",
    "launched_at",
    "launch_requested_at",
    "state_changed_at",
    "call_issued_at",
    "call_accepted_at",
    "reissues",
    "hook_seconds",
    "hook_until",
    "setup_done_at",
)


def decide_locked(
    labs: Iterable[Lab],
    observation: Callable[[Lab], Observation | None],
    now: datetime,
    actor: str,
    budget: int | None = None,
    ahead: Collection[int] | None = None,
) -> list[Job]:
    """Decide for rows the caller holds locked, store the changes in bulk, send the jobs after commit.

    ``observation`` gives each lab's (None: skip it); ``ahead``, if given, the labs placement let
    create. ``budget`` caps rate-limited calls.
    """
    jobs: list[Job] = []
    events: list[LabEvent] = []
    writes: list[tuple[Lab, dict[str, Any]]] = []
    allowance = None if budget is None else [budget]
    for lab in labs:
        obs = observation(lab)
        if obs is None:
            continue
        can_create = ahead is None or lab.pk in ahead
        job = apply(lab, obs, now, actor, allowance, can_create=can_create, events=events, writes=writes)
        if job:
            jobs.append(job)
    _bulk_store(writes)
    LabEvent.objects.bulk_create(events)
    dispatch(jobs)
    return jobs


def reconcile_provider(provider: str, now: datetime, budget: int) -> list[Job]:
    """One tick over one provider's labs whose next step needs no news from the cloud.

    Probes, suspends and resumes the learners asked for, deletes, relaunches: decided on
    the rows alone, so the tick never waits for the cloud. The pass locks the rows it
    decides for; a learner's click on one of them waits the pass's few milliseconds.
    """
    with transaction.atomic():
        rows = (
            Lab.objects.select_for_update()
            .filter(UNSETTLED, provider=provider)
            .exclude(state__in=OBSERVED_STATES)
            .only(*PASS_FIELDS)
        )
        return decide_locked(rows, believed, now, "reconciler", budget)


def _bulk_store(writes: list[tuple[Lab, dict[str, Any]]]) -> None:
    """Store a pass's changes in few statements, for rows whose locks the caller holds.

    Rows given the very same values (all labs that settled into one state this pass)
    share one UPDATE; the rest go out as one CASE-per-column UPDATE per set of columns.
    """
    alike: dict[tuple[tuple[str, str], ...], list[tuple[Lab, dict[str, Any]]]] = {}
    for lab, fields in writes:
        key = tuple(
            sorted((name, json.dumps(value, sort_keys=True, default=str)) for name, value in fields.items())
        )
        alike.setdefault(key, []).append((lab, fields))
    by_columns: dict[tuple[str, ...], list[Lab]] = {}
    for items in alike.values():
        if len(items) > 1:
            Lab.objects.filter(pk__in=[lab.pk for lab, _ in items]).update(**items[0][1])
        else:
            lab, fields = items[0]
            by_columns.setdefault(tuple(sorted(fields)), []).append(lab)
    for names, labs in by_columns.items():
        Lab.objects.bulk_update(labs, list(names), batch_size=500)


def place_queued(now: datetime, limit: int = 500) -> list[Job]:
    """Labs not yet on any provider: place those that fit, learners' oldest first, and start their creates.

    One transaction and a few statements for the whole queue, however long it is.
    """
    with transaction.atomic():
        # Learners before warm pools' stacks (no learner): a pool never keeps a learner waiting.
        first = ExpressionWrapper(Q(learner__isnull=True), output_field=BooleanField())
        queued = Lab.objects.select_for_update().filter(UNSETTLED, provider="").order_by(first, "id")
        labs = list(queued.only(*PASS_FIELDS, "blueprint_id", "tried_providers")[:limit])
        beliefs = {lab.pk: believed(lab) for lab in labs}  # before placement gives them a provider
        ahead = placement.place(labs)
        return decide_locked(labs, lambda lab: beliefs[lab.pk], now, "reconciler", ahead=ahead)
