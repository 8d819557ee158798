"""Jobs for the workers: sending them after commit, the cloud's rate, and what a worker says of a call.

A job is one cloud call (or a probe of a lab's port) decided by the engine. It is sent
only after the transaction that decided it commits. The row remembers when its call was
issued (``call_issued_at``) until someone sees the cloud take it (``call_accepted_at``):
the worker's answer, or an observation of the cloud at work. A call nobody saw taken
within the acceptance window was lost, and the lifecycle issues it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import QuerySet

from labxblock.conf import get_settings
from labxblock.lifecycle import CALLS, Action, Reason, State
from labxblock.models import Lab, LabEvent

log = logging.getLogger(__name__)
PERFORM_TASK = "labxblock.tasks.perform_job"
HOOK_TASK = "labxblock.tasks.run_hooks"
# A hook job's limit: above the longest run authoring allows (5 scripts of 600 s, and connecting),
# and with its 30 s of grace below the 3600 s visibility_timeout the Tutor plugin keeps at least, so
# Redis never delivers a second copy of a job still running.
HOOK_TASK_SECONDS = 3300


@dataclass(frozen=True)
class Job:
    """One action for a worker: a cloud call or a probe. Plain data, safe to send over the broker."""

    lab_id: int
    action: Action
    state: State  # the state the action was decided in; a job for a lab that moved on is dropped
    # A call's identity: the row's ``call_issued_at`` when it was issued (then as its worker last
    # started or retried it). A copy whose row no longer says so is stale (see ``started``).
    issued: datetime | None = field(default=None, compare=False)

    def as_args(self) -> list[Any]:
        args: list[Any] = [self.lab_id, self.action.value, self.state.value]
        return [*args, self.issued.isoformat()] if self.issued is not None else args

    @classmethod
    def from_args(cls, lab_id: int, action: str, state: str, issued: str | None = None) -> Job:
        return cls(lab_id, Action(action), State(state), datetime.fromisoformat(issued) if issued else None)


def send_after_commit(task_name: str, args_list: list[list[Any]], *, queue: str, **options: Any) -> None:
    """Send tasks to ``queue`` (with Celery ``options`` such as time limits) once the transaction commits.

    The queue is named on every send, so a host's router (edx-platform's sends whatever it
    does not list to its default queue) cannot mix labxblock's tasks with the platform's.

    Robust: if the broker is down, the error is logged and the caller's request still
    succeeds; what was stored is picked up again later (a call's acceptance window, a run's deadline).
    """
    if args_list:
        options["queue"] = queue
        transaction.on_commit(lambda: _send(task_name, args_list, options), robust=True)


def _send(task_name: str, args_list: list[list[Any]], options: dict[str, Any]) -> None:
    # One producer (one broker connection) for the whole batch, not a new client per message.
    with current_app.producer_or_acquire() as producer:
        for args in args_list:
            current_app.send_task(task_name, args=args, producer=producer, **options)


def queue_for(action: Action) -> str:
    """The queue of a job: a probe (is the lab up yet?) goes with the observations, so a burst of cloud
    calls never makes a lab that is already up wait to be seen ready; the calls to their own queue."""
    queues = get_settings().queues
    return queues.observe if action is Action.PROBE else queues.calls


def dispatch(jobs: list[Job]) -> None:
    """Send jobs to the workers once the surrounding transaction has committed.

    Lifecycle scripts (``Action.HOOK``) run in the lab as checks do: on the checks' queue and workers.
    """
    queues = get_settings().queues
    by_queue: dict[str, list[list[Any]]] = {}
    for job in jobs:
        if job.action is not Action.HOOK:
            by_queue.setdefault(queue_for(job.action), []).append(job.as_args())
    hooks = [[job.lab_id, job.state.value] for job in jobs if job.action is Action.HOOK]
    for queue, args_list in by_queue.items():
        send_after_commit(PERFORM_TASK, args_list, queue=queue)
    send_after_commit(HOOK_TASK, hooks, queue=queues.checks, soft_time_limit=HOOK_TASK_SECONDS,
                      time_limit=HOOK_TASK_SECONDS + 30)


WINDOW_SECONDS = 60  # the rate's window: at most actions_per_minute calls in any minute
# Events that make a rate-limited call: entering (or reissued in) one of these states, unless the
# cloud was already at it (adopted); and entering FAILED, whose cleanup delete goes out with it (a
# class's creates failing at once on a full quota). A few decisions logged in these states without a
# call count too: the safe side.
CALL_STATES = (State.SUSPENDING.value, State.RESUMING.value, State.DELETING.value, State.FAILED.value)


def call_budget(provider: str, actions_per_minute: int, now: datetime) -> int:
    """Rate-limited calls this pass may make on ``provider``: what the last minute left of its rate.

    At most ``actions_per_minute`` suspends, resumes and deletes in any 60 s, as the setting
    says, whatever the pass's period: a provider at rest has its whole minute's worth, so a
    class of 200 leaving together has 120 suspends made at once and the rest a minute later,
    not two a second for 100 s (a month of lessons: billed ÷ used 1.069 → 1.057,
    benchmarks/lesson_month.py). Counted from the lab events of the last minute (one indexed
    query), the learners' own resumes and resets too: the cloud's rate is the cloud's, and
    the count holds across any number of tick processes.
    """
    since = now - timedelta(seconds=WINDOW_SECONDS)
    made = LabEvent.objects.filter(provider=provider, at__gt=since, at__lte=now, to_state__in=CALL_STATES)
    return max(0, actions_per_minute - made.exclude(reason=Reason.ADOPTED.value).count())


# --- what a worker says of its call (compare-and-set on the call's identity) -------------------
#
# Two copies of one call can run: a reissued call's (the old one was only slow) or a job the broker
# redelivered. Only the copy whose identity the row still holds speaks for the lab; the others change
# nothing, so an older copy's failure is never counted against a call that is doing fine. A job with
# no identity (sent before calls had one) is taken at its word, as before.


def this_call(job: Job) -> QuerySet[Lab]:
    """The lab's row, if the job is its current call (the state it was decided in, its identity)."""
    rows = Lab.objects.filter(pk=job.lab_id, state=job.state)
    return rows if job.issued is None else rows.filter(call_issued_at=job.issued)


def stale(job: Job, what: str) -> None:
    """Say (for debugging) that a stale copy's ``what`` changed nothing."""
    log.debug("labxblock: %s of lab %s issued at %s is not the lab's call any more: %s ignored",
              job.action, job.lab_id, job.issued, what)


def started(job: Job, now: datetime) -> Job | None:
    """A worker is making the call now: the acceptance window counts from here, not from the queue.

    Returns the job as the row now knows it (its identity moved to ``now``), or None for a stale copy,
    which must not make the call: another copy has started it, or the lab moved on.
    """
    if job.action not in CALLS:
        return job
    if not this_call(job).update(call_issued_at=now):
        stale(job, "start")
        return None
    return replace(job, issued=now)


def retrying(job: Job, at: datetime) -> Job | None:
    """The call failed for a while (the cloud or the database): its worker tries again at ``at``.

    Returns the job the retry must carry, or None for a stale copy (not to be retried).
    """
    if not this_call(job).update(call_issued_at=at):
        stale(job, "retry")
        return None
    return replace(job, issued=at)


def accepted(job: Job, now: datetime) -> None:
    """The cloud took the call: no reissue for it, only the state's deadline now."""
    if not this_call(job).update(call_accepted_at=now):
        stale(job, "acceptance")
