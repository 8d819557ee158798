"""Progress checks on the labs side: start a run, hand the task its job, record what came of it.

One run at a time per learner and block: ``request_check`` holds the lab's row
lock while it looks for a running run, so a double click or two tabs start one
run. A lab that is not ready is not checked and not scored: the run is recorded
as failed with reason ``not_ready`` and the learner is asked to resume it first.
A run that outlives its deadline (broker down, worker killed) is closed as
``lost`` the next time anyone looks, so nothing stays "running" for ever.

Checks log in with the template's check account when it gives one (outputs
``check_user`` and ``check_private_key``), else with the learner's own account,
which the learner can change (``login_of``).

What is stored per check is what the learner may see (name, passed, the author's
hint, a tail of stderr) plus a head of stdout for staff, all scrubbed of the
lab's secrets: a script that prints the lab's key must not put it in the table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from labxblock.conf import get_settings
from labxblock.labs import addressing
from labxblock.labs.calls import send_after_commit
from labxblock.labs.specs import DEFAULT_PORTS
from labxblock.lifecycle import Desired, State
from labxblock.models import CheckRun, Lab, check_run_scored, scrub

log = logging.getLogger(__name__)

RUN_TASK = "labxblock.tasks.run_checks"
CONNECT_TIMEOUT_SECONDS = 10
QUEUE_SECONDS = 60  # a run may wait this long for a free worker before it counts as lost
TASK_MARGIN_SECONDS = 30  # the task's hard limit beyond the run's own budget (DB writes, start-up)
STORED_CHARS = 2000  # per stream and check: what the history keeps of the output
HISTORY = 5

# Why a run was not scored (CheckRun.reason).
NOT_READY = "not_ready"  # the lab was not up: resume it first
UNREACHABLE = "unreachable"  # the lab did not answer over SSH
AUTH = "auth"  # the lab refused its own key (or the template gave half a check account)
HOST_KEY = "host_key"  # the lab's host key was not the template's: nothing was sent
LOST = "lost"  # the run did not finish in time (worker or broker trouble)
BAD_ADDRESS = "bad_address"  # the lab's address or port is one this site refuses: nothing was sent
REASONS = (NOT_READY, UNREACHABLE, AUTH, HOST_KEY, LOST, BAD_ADDRESS)
STAFF_ACTOR = "staff:"  # a run started by staff viewing as the learner: shown, never the learner's score


def by_staff(actor: str) -> bool:
    """Was a run started by staff (masquerading), so that it must not change the learner's grade?"""
    return actor.startswith(STAFF_ACTOR)


@dataclass(frozen=True)
class CheckRunView:
    """A run as the block shows it: no script, no secret."""

    id: int
    state: str
    reason: str
    started_at: datetime
    finished_at: datetime | None
    score: float | None
    results: tuple[Mapping[str, Any], ...]
    by_staff: bool = False  # started by staff viewing as the learner: never graded

    @property
    def running(self) -> bool:
        return self.state == CheckRun.State.RUNNING


@dataclass(frozen=True)
class Login:
    """The account checks log in as."""

    username: str
    private_key: str = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True)
class Reach:
    """How scripts (checks, lifecycle scripts) reach a lab; holds its secrets, so never logged or shown."""

    host: str  # the checked address: connect here, never to the name again
    port: int
    login: Login = field(repr=False)
    host_key: str
    label: str  # the stack name, for logs


class Unreachable(Exception):
    """Scripts cannot be sent to the lab; ``reason`` is one of REASONS. The log says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckJob:
    """What the task needs to run the checks; holds the lab's secrets, so never logged or shown."""

    run_id: int
    reach: Reach
    checks: tuple[Mapping[str, Any], ...] = field(repr=False)  # the author's scripts may hold secrets
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS


def view_of(run: CheckRun) -> CheckRunView:
    return CheckRunView(run.pk, run.state, run.reason, run.started_at, run.finished_at, run.score,
                        tuple(run.results or ()), by_staff(run.actor))


def budget_seconds(checks: Sequence[Mapping[str, Any]]) -> float:
    """How long running ``checks`` may take (the runner's own bound)."""
    from labxblock.checks import CheckSpec, time_budget  # paramiko, only when checks are run

    specs = [CheckSpec(name=str(c["name"]), script="", timeout=float(c["timeout"]),
                       host=str(c.get("host") or "")) for c in checks]
    return time_budget(specs, CONNECT_TIMEOUT_SECONDS)


def request_check(
    user: Any, course_run: str, lab_key: str, usage_id: str, checks: Sequence[Mapping[str, Any]], *,
    actor: str, weight: float | None = 1.0,
) -> CheckRunView:
    """Start a run of ``checks`` (complete dicts, see ``authoring.check_specs``) on the learner's lab.

    ``weight`` is the block's: the run's points at full marks when the worker publishes its score.

    Returns the running run if there is one; a failed ``not_ready`` run if the lab is not up.
    """
    now = timezone.now()
    budget = budget_seconds(checks)
    with transaction.atomic():
        # The lab's row lock serialises requests for it (SQLite: the IMMEDIATE transaction does).
        lab = (Lab.objects.select_for_update()
               .filter(learner=user, course_run=course_run, lab_key=lab_key).first())
        running = (CheckRun.objects.filter(learner=user, course_run=course_run, usage_id=usage_id,
                                           state=CheckRun.State.RUNNING).order_by("-started_at").first())
        if running is not None:
            if running.deadline_at > now:
                return view_of(running)
            _close(running.pk, LOST, now)
        ready = _usable(lab)
        run = CheckRun.objects.create(
            lab=lab, learner=user, course_run=course_run, usage_id=usage_id, lab_key=lab_key, actor=actor,
            checks=list(checks), weight=weight, started_at=now,
            deadline_at=now + timedelta(seconds=QUEUE_SECONDS + budget),
            state=CheckRun.State.RUNNING if ready else CheckRun.State.FAILED,
            reason="" if ready else NOT_READY, finished_at=None if ready else now,
        )
        if ready:  # broker down: the run is closed as lost at its deadline, the learner retries
            limit = int(budget) + TASK_MARGIN_SECONDS
            # Their own queue: a class checking at once cannot hold up the workers of the lifecycle.
            send_after_commit(RUN_TASK, [[run.pk]], queue=get_settings().queues.checks,
                              soft_time_limit=limit, time_limit=limit + 10)
    return view_of(run)


def _usable(lab: Lab | None) -> bool:
    """Can checks run in this lab now: ready, wanted up, with an address."""
    return lab is not None and lab.state == State.READY and lab.desired == Desired.UP and bool(lab.ip)


def _close(run_id: int, reason: str, now: datetime) -> bool:
    """Mark a running run failed; False if it had already finished."""
    return bool(CheckRun.objects.filter(pk=run_id, state=CheckRun.State.RUNNING).update(
        state=CheckRun.State.FAILED, reason=reason, finished_at=now))


@sensitive_variables("lab")
def claim(run_id: int) -> CheckJob | None:
    """The job for a running run whose lab is still ready; None if there is nothing (more) to do.

    A lab that went down since the request closes the run as ``not_ready``; one whose address
    or port the site refuses (checked before any secret is read) as ``bad_address``; one whose
    template gives half a check account as ``auth``.
    """
    now = timezone.now()
    run = CheckRun.objects.filter(pk=run_id, state=CheckRun.State.RUNNING).select_related("lab").first()
    if run is None:
        return None
    if run.deadline_at <= now:
        _close(run.pk, LOST, now)
        return None
    lab = run.lab
    if not _usable(lab):
        _close(run.pk, NOT_READY, now)
        return None
    try:
        found = reach(lab, f"check run {run.pk}")
    except Unreachable as exc:
        _close(run.pk, exc.reason, now)
        return None
    return CheckJob(run_id=run.pk, reach=found, checks=tuple(run.checks))


@sensitive_variables("lab", "login")
def reach(lab: Lab, what: str) -> Reach:
    """How ``what`` (a check run, lifecycle scripts) reaches ``lab``: its address and port, checked
    before any secret is read, and who logs in (``login_of``). Unreachable (``bad_address``,
    ``auth``), logged, when scripts may not or cannot be sent."""
    try:
        address, port = addressing.check(lab.provider, lab.ip, lab.port or DEFAULT_PORTS["ssh"])
    except addressing.AddressRefused as exc:
        log.warning("labxblock: %s: lab %s not reached: %s", what, lab.stack_name, exc)
        raise Unreachable(BAD_ADDRESS) from None
    login = login_of(lab)
    if login is None:
        log.warning("labxblock: lab %s: the template outputs only half a check account (check_user and "
                    "check_private_key go together): %s cannot run", lab.stack_name, what)
        raise Unreachable(AUTH)
    return Reach(host=address, port=port, login=login, host_key=str(lab.outputs.get("host_key", "")),
                 label=lab.stack_name)


@sensitive_variables("check_key")
def login_of(lab: Lab) -> Login | None:
    """Who checks log in as; None for half a check account.

    With the template's check account (outputs ``check_user`` and ``check_private_key``)
    checks log in with it alone, never with the learner's password. Without one they log
    in as the learner, as before, and a learner who edits their own account can forge
    them (Studio warns). Half an account is refused rather than run as the learner: the
    author meant checks the learner cannot touch.
    """
    check_user = str(lab.outputs.get("check_user") or "").strip()
    check_key = lab.secret_output("check_private_key")
    if check_user and check_key:
        return Login(check_user, check_key, "")
    if check_user or check_key:
        return None
    return Login(lab.stack_user, lab.private_key, lab.password)


def record_failure(run_id: int, reason: str) -> bool:
    """The run could not check the lab (``reason`` from REASONS): nothing is scored."""
    assert reason in REASONS, reason
    return _close(run_id, reason, timezone.now())


def record_results(run_id: int, results: Sequence[Mapping[str, Any]]) -> bool:
    """Store the runner's results (``CheckResult`` as dicts) and the score; False if the run was closed."""
    now = timezone.now()
    with transaction.atomic():
        run = CheckRun.objects.select_for_update().filter(pk=run_id).select_related("lab").first()
        if run is None or run.state != CheckRun.State.RUNNING:
            return False
        known = run.lab.known_secrets() if run.lab is not None else []
        hints = [str(c.get("hint") or "") for c in run.checks]  # results come in the checks' order
        stored = [_stored(r, hints[i] if i < len(hints) else "", known) for i, r in enumerate(results)]
        total = sum(r["weight"] for r in stored)
        run.results = stored
        run.score = sum(r["weight"] for r in stored if r["passed"]) / total if total else 0.0
        run.state, run.finished_at = CheckRun.State.DONE, now
        run.save(update_fields=["results", "score", "state", "finished_at"])
        check_run_scored.send(sender=CheckRun, run=run)
    return True


def _stored(result: Mapping[str, Any], hint: str, known: list[str]) -> dict[str, Any]:
    stderr, stdout = str(result.get("stderr") or ""), str(result.get("stdout") or "")
    return {
        "name": result["name"], "passed": bool(result["passed"]), "weight": float(result["weight"]),
        "hint": hint, "timed_out": bool(result.get("timed_out")), "exit_status": result.get("exit_status"),
        "error": str(result.get("error") or ""), "truncated": bool(result.get("truncated")),
        "seconds": round(float(result.get("seconds") or 0), 2),
        # The tail of stderr is where the error is; scrubbing after cutting could miss a key cut in half.
        "stderr": scrub(stderr, known)[-STORED_CHARS:], "stdout": scrub(stdout, known)[:STORED_CHARS],
    }


def latest_runs(user: Any, course_run: str, usage_id: str, limit: int = HISTORY) -> list[CheckRunView]:
    """The learner's last runs of this block's checks, newest first; an overdue run is closed as lost."""
    now = timezone.now()
    mine = CheckRun.objects.filter(learner=user, course_run=course_run, usage_id=usage_id).defer("checks")
    runs = list(mine.order_by("-started_at", "-pk")[:limit])
    overdue = [run for run in runs if run.state == CheckRun.State.RUNNING and run.deadline_at <= now]
    for run in overdue:
        _close(run.pk, LOST, now)
    if overdue:
        runs = list(mine.order_by("-started_at", "-pk")[:limit])
    return [view_of(run) for run in runs]


def scored_runs(user: Any, course_run: str, usage_id: str) -> Any:
    """The learner's finished runs that count for their grade (not staff's), newest first."""
    return (CheckRun.objects.filter(learner=user, course_run=course_run, usage_id=usage_id,
                                    state=CheckRun.State.DONE)
            .exclude(actor__startswith=STAFF_ACTOR).order_by("-started_at", "-pk"))


def latest_scored_run(user: Any, course_run: str, usage_id: str) -> int | None:
    """The id of the learner's last scored run (an instructor's override stands until a newer one)."""
    return scored_runs(user, course_run, usage_id).values_list("pk", flat=True).first()


def latest_score(user: Any, course_run: str, usage_id: str) -> float | None:
    """The score of the learner's last scored run (instructor rescoring); None if none was scored."""
    return scored_runs(user, course_run, usage_id).values_list("score", flat=True).first()
