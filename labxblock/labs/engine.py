"""The reconciler's side of labs: decide for rows, store the decisions, hand out jobs.

A reconcile pass locks the rows it decides for and writes their changes in a
few bulk statements; a single lab (a learner's launch, a probe's answer) is
stored with a conditional UPDATE, so a click racing a pass never loses either:
the loser's change is simply decided again next pass. Every state change
appends a LabEvent. Jobs (one cloud call or one probe each) are sent to the
workers only after the transaction commits.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import current_app
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from labxblock import lifecycle
from labxblock.conf import get_settings
from labxblock.labs import placement
from labxblock.lifecycle import Action, Decision, Desired, LabView, State
from labxblock.models import SECRET_FIELDS, Lab, LabEvent, scrubbed

PERFORM_TASK = "labxblock.tasks.perform_job"
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

# What a lab's own state says about its stack, when the cloud was not asked this time.
_BELIEVED: Mapping[State, State | None] = {
    State.REQUESTED: None,
    State.CREATING: State.CREATING,
    State.STARTING: State.READY,
    State.READY: State.READY,
    State.SUSPENDING: State.SUSPENDING,
    State.SUSPENDED: State.SUSPENDED,
    State.RESUMING: State.RESUMING,
    State.DELETING: State.DELETING,
    State.DELETED: None,
    State.FAILED: State.FAILED,
}


@dataclass(frozen=True)
class Job:
    """One action for a worker: a cloud call or a probe. Plain data, safe to send over the broker."""

    lab_id: int
    action: Action
    state: State  # the state the action was decided in; a job for a lab that moved on is dropped

    def as_args(self) -> list[Any]:
        return [self.lab_id, self.action.value, self.state.value]


@dataclass(frozen=True)
class Observation:
    """What the cloud's list said of one stack this pass."""

    state: State | None
    raw_status: str = ""
    reason: str = ""
    provider_state: Mapping[str, Any] = field(default_factory=dict)


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
    )


def believed(lab: Lab) -> Observation:
    return Observation(_BELIEVED[State(lab.state)])


def send_after_commit(task_name: str, args_list: list[list[Any]], *, queue: str, **options: Any) -> None:
    """Send tasks to ``queue`` (with Celery ``options`` such as time limits) once the transaction commits.

    The queue is named on every send, so a host's router (edx-platform's sends whatever it
    does not list to its default queue) cannot mix labxblock's tasks with the platform's.

    Robust: if the broker is down, the error is logged and the caller's request still
    succeeds; what was stored is picked up again later (the next pass, a run's deadline).
    """
    if args_list:
        options["queue"] = queue
        transaction.on_commit(lambda: _send(task_name, args_list, options), robust=True)


def _send(task_name: str, args_list: list[list[Any]], options: dict[str, Any]) -> None:
    # One producer (one broker connection) for the whole batch, not a new client per message.
    with current_app.producer_or_acquire() as producer:
        for args in args_list:
            current_app.send_task(task_name, args=args, producer=producer, **options)


def call_budget(provider: str, actions_per_minute: int, interval_seconds: int) -> int:
    """Rate-limited calls this pass may make on ``provider``: its share of the minute's rate.

    The fraction a pass cannot use is carried to the next (in the cache), so 30 a minute
    with a 1 s pass gives one call every other pass; whole calls left unused are not saved
    up, so the cloud never sees a burst above the rate.
    """
    key = f"labxblock:call-budget:{provider}"
    allowance = cache.get(key, 0.0) + actions_per_minute * interval_seconds / 60
    whole = int(allowance)
    cache.set(key, allowance - whole, timeout=3600)
    return whole


def dispatch(jobs: Iterable[Job]) -> None:
    """Send jobs to the workers once the surrounding transaction has committed."""
    send_after_commit(PERFORM_TASK, [job.as_args() for job in jobs], queue=get_settings().queues.calls)


def _fields_for_move(lab: Lab, decision: Decision, obs: Observation, now: datetime) -> dict[str, Any]:
    """Bookkeeping that goes with entering ``decision.state``."""
    new = decision.state
    fields: dict[str, Any] = {"state": new.value, "state_changed_at": now, "probe_ok": False}
    if new is State.REQUESTED and obs.state is None:
        # The stack is gone: forget it entirely, and let placement choose a provider afresh.
        fields.update(provider="", provider_state={}, outputs={}, ip="", port=None, tried_providers=[])
        fields.update(private_key="", password="", secret_outputs="", raw_status="")
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
    view, fields, moves = view_of(lab), {}, []
    decision = lifecycle.decide(view, obs.state, now, policy)
    for _ in range(MAX_CHAIN):
        if decision.state is not None:
            moves.append((view.state, decision))
            fields.update(_fields_for_move(lab, decision, obs, now))
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
    fields.update(deadline_at=view.deadline_at, attempts=view.attempts, next_attempt_at=view.next_attempt_at)
    if obs.state is not None:
        fields.update(raw_status=obs.raw_status[:64])
        if obs.provider_state and not lab.provider_state:
            fields["provider_state"] = dict(obs.provider_state)  # adopt the stack the cloud has
    # Built before storing: a move to REQUESTED clears the provider the event must still name.
    new_events = [
        # Reasons here are the lifecycle's fixed words: nothing to scrub, no secret to load.
        LabEvent.build(
            lab,
            actor=actor,
            reason=str(move.reason or ""),
            from_state=from_state.value,
            to_state=move.state.value,
            at=now,
        )
        for from_state, move in moves
    ]
    changed = moves or any(getattr(lab, name) != value for name, value in fields.items())
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
    return Job(lab.pk, decision.action, view.state)


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

    With ``send=False`` the job is returned for the caller to carry out itself.
    """
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=lab_id).first()
        if lab is None:
            return None
        placed = lab.pk in placement.place([lab])  # unplaced: queued for capacity, the pass tries again
        job = apply(lab, believed(lab), now, actor, can_create=placed)
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
    "status_reason",
    "launched_at",
    "launch_requested_at",
)


def reconcile_provider(
    provider: str, listing: Mapping[str, Observation], now: datetime, budget: int
) -> list[Job]:
    """One pass over one provider's unsettled labs, against its one ``list`` of stacks.

    The pass locks the rows it decides for, so their changes can go out as a few bulk
    statements; a learner's click on one of them waits the pass's few hundred milliseconds.
    """
    jobs: list[Job] = []
    events: list[LabEvent] = []
    writes: list[tuple[Lab, dict[str, Any]]] = []
    allowance = [budget]
    with transaction.atomic():
        unsettled = Lab.objects.select_for_update().filter(UNSETTLED, provider=provider)
        rows = {lab.pk: lab for lab in unsettled.only(*PASS_FIELDS)}
        # Settled labs whose stack the cloud shows in motion or failed need a look too
        # (FAILED ones excepted: failure is sticky until the learner retries).
        known = {lab.stack_name for lab in rows.values()}
        moving = [
            n for n, o in listing.items() if o.state not in (State.READY, State.SUSPENDED) and n not in known
        ]
        if moving:
            settled_states = [State.READY, State.SUSPENDED, State.DELETED]  # FAILED stays: it is sticky
            drifted = Lab.objects.select_for_update().filter(
                provider=provider, stack_name__in=moving, state__in=settled_states
            )
            for lab in drifted.only(*PASS_FIELDS):
                rows.setdefault(lab.pk, lab)
        for lab in rows.values():
            obs = listing.get(lab.stack_name, Observation(None))
            job = apply(lab, obs, now, "reconciler", allowance, events=events, writes=writes)
            if job:
                jobs.append(job)
        _bulk_store(writes)
        LabEvent.objects.bulk_create(events)
        dispatch(jobs)
    return jobs


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
    """Labs not yet on any provider: place those that fit, oldest first, and start their creates.

    One transaction and a few statements for the whole queue, however long it is.
    """
    jobs: list[Job] = []
    events: list[LabEvent] = []
    writes: list[tuple[Lab, dict[str, Any]]] = []
    with transaction.atomic():
        queued = Lab.objects.select_for_update().filter(UNSETTLED, provider="").order_by("id")
        labs = list(queued.only(*PASS_FIELDS, "blueprint_id", "tried_providers")[:limit])
        ahead = placement.place(labs)
        for lab in labs:
            job = apply(lab, believed(lab), now, "reconciler", can_create=lab.pk in ahead,
                        events=events, writes=writes)
            if job:
                jobs.append(job)
        _bulk_store(writes)
        LabEvent.objects.bulk_create(events)
        dispatch(jobs)
    return jobs


def audit(provider: str, listing: Mapping[str, Observation], now: datetime) -> list[Job]:
    """Settled labs whose stack vanished or changed behind our back (the pass only looks at moving ones)."""
    jobs: list[Job] = []
    with transaction.atomic():
        settled = Lab.objects.filter(provider=provider, state__in=[State.READY, State.SUSPENDED])
        for lab_id, stack_name, state in settled.values_list("pk", "stack_name", "state").iterator(2000):
            obs = listing.get(stack_name, Observation(None))
            if obs.state == state:
                continue
            lab = Lab.objects.filter(pk=lab_id).defer(*SECRET_FIELDS).first()
            job = apply(lab, obs, now, "auditor") if lab else None
            if job:
                jobs.append(job)
        dispatch(jobs)
    return jobs
