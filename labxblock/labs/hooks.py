"""Lifecycle scripts: the author's scripts, run inside a learner's lab at moments of its life.

Kinds (``fields.HOOK_KINDS``): ``setup`` runs once per stack, when it first answers;
``after_resume`` after each resume (fix the clock, restart agents); both before the
learner is told the lab is ready, so that what they set up is there when the learner
types or a check runs. ``before_suspend`` runs before each suspend of a ready lab (stop
services cleanly), while it still runs. A script that fails or hangs holds the lab no
longer than its time, never fails it, and is logged for the course team.

The scripts travel in the lab's blueprint (``LabSpec.hooks``). Each launch records on
the row how long each kind may take (``bounds``: the check runner's bound on them, plus
a while in the queue), so that the lifecycle can wait for them without reading the
blueprint (``seconds_due``). Where they are due (``lifecycle.HOOKED``) it sends a
``hook`` job to the checks queue (``tasks.run_hooks``): ``claim`` here, the check
runner's machinery there (each script's timeout, capped output, the host key verified,
the template's check account when it has one, the lab's address checked first),
``record`` here (an event per script: kind, name, exit status, seconds and the end of
its output scrubbed of the lab's secrets; never the script itself), and
``jobs.record_scripts_done`` ends the lab's wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from labxblock.labs import checking
from labxblock.lifecycle import HOOKED, Desired, State
from labxblock.models import Lab, LabEvent, scrub

QUEUE_SECONDS = 30  # how long a hook job may wait for a checks worker, within the lab's wait
OUTPUT_CHARS = 300  # the end of each stream a script's event keeps
ACTOR = "scripts"


def bounds(hooks: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """How long each kind of ``hooks`` (complete, ``authoring.hook_specs``) may take, queue included."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for hook in hooks:
        by_kind.setdefault(hook["kind"], []).append(hook)
    return {kind: QUEUE_SECONDS + checking.budget_seconds(scripts) for kind, scripts in by_kind.items()}


def kind_due(state: str, setup_done: bool) -> str | None:
    """Which kind runs before a lab in ``state`` moves on (where ``lifecycle.HOOKED`` says scripts run)."""
    if state == State.READY:
        return "before_suspend"
    if state == State.STARTING:
        return "after_resume" if setup_done else "setup"
    return None


def seconds_due(lab: Lab) -> float:
    """How long the scripts due before the lab's next step may take: the lifecycle's ``hook_seconds``."""
    if (State(lab.state), Desired(lab.desired)) not in HOOKED:
        return 0.0
    kind = kind_due(lab.state, lab.setup_done_at is not None)
    return float((lab.hook_seconds or {}).get(kind, 0.0))


@dataclass(frozen=True)
class HookJob:
    """What the task runs: the lab's scripts of one kind and how to reach the lab (secrets: never logged)."""

    lab_id: int
    state: State  # the state the scripts were sent in
    kind: str
    until: datetime  # the wait they were sent for: their end counts only while the lab still waits on it
    scripts: tuple[Mapping[str, Any], ...] = field(repr=False)  # the author's scripts may hold secrets
    reach: checking.Reach | None = field(repr=False)  # None: they cannot be sent (``failure`` says why)
    failure: str = ""


@sensitive_variables("lab")
def claim(lab_id: int, state: State, now: datetime) -> HookJob | None:
    """The scripts a hook job runs; None if the lab waits for none any more (moved on, or time is up)."""
    lab = Lab.objects.filter(pk=lab_id, state=state).select_related("blueprint").first()
    if lab is None or lab.hook_until is None or lab.hook_until <= now:
        return None
    if (State(lab.state), Desired(lab.desired)) not in HOOKED:
        return None
    kind = kind_due(lab.state, lab.setup_done_at is not None)
    spec = lab.blueprint.spec if lab.blueprint_id else {}
    scripts = tuple(hook for hook in spec.get("hooks", ()) if hook.get("kind") == kind)
    reach, failure = None, ""
    if scripts:
        try:
            reach = checking.reach(lab, f"{kind} scripts")
        except checking.Unreachable as exc:
            failure = exc.reason
    return HookJob(lab.pk, state, str(kind), lab.hook_until, scripts, reach, failure)


def record(job: HookJob, results: Sequence[Mapping[str, Any]], failure: str = "") -> None:
    """Log each script's run (``checks.CheckResult`` as dicts), or why none ran, in the lab's event log."""
    lab = Lab.objects.filter(pk=job.lab_id).first()
    if lab is None:
        return
    known, now = lab.known_secrets(), timezone.now()
    if failure:
        LabEvent.record(lab, actor=ACTOR, reason=f"{job.kind} scripts not run: {failure}", at=now)
    for result in results:
        LabEvent.record(lab, actor=ACTOR, reason=describe(job.kind, result, known), at=now)


def describe(kind: str, result: Mapping[str, Any], known: list[str]) -> str:
    """One script's run for operators: name, exit status, seconds, the end of its output (scrubbed)."""
    name = result["name"]
    if result.get("error"):
        return f"{kind} script {name!r} not run: {result['error']}"
    status = "timed out" if result.get("timed_out") else f"exit status {result.get('exit_status')}"
    line = f"{kind} script {name!r}: {status} after {float(result.get('seconds') or 0):.1f} s"
    for stream in ("stdout", "stderr"):
        # Scrubbed whole, then cut: a key cut in half would not be recognised.
        text = scrub(str(result.get(stream) or ""), known).strip()
        if text:
            line += f"; {stream}: {text[-OUTPUT_CHARS:]}"
    return line
