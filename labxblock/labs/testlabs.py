"""Studio's test labs: an author launches the block's lab as it is saved, apart from every learner's.

A test lab is an ordinary lab row (the same engine builds, probes and deletes it)
whose lab key is ``studio-test:<usage id>`` and whose learner is the author, so it
never meets a learner's lab: usage leaves it out, its check runs are never graded
(``labs.grading``), and learners' launch estimates do not see it. Its stack carries
the tag ``labxblock-studio-test`` beside the site's. It is never suspended for
idleness; the reaper deletes it once ``studio_test_lab_timeout`` has passed since
its launch (``delete_by``, set by a fresh launch, a rebuild or a retry, never moved by
pressing "Test this lab" again), or the author stops it. The site may turn test labs off
(``studio_test_labs``) or cap the live ones per course run (``studio_test_labs_per_course``):
the cap is counted under a row lock, so two authors cannot both take the last one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from labxblock.conf import LabSettings, get_settings
from labxblock.labs import learner
from labxblock.labs.engine import send_after_commit
from labxblock.labs.jobs import OUTPUTS_READ
from labxblock.labs.specs import TEST_LAB_PREFIX, LabSpec, LabStatus, blueprint_digest
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent, ProviderLock

CLOUD_TAG = "labxblock-studio-test"
LAUNCHED = "test launch requested"  # the event each test launch starts with: its phases count from it
STOPPED = "test lab stopped"
HOST_KEY_RECORDED = "host key recorded at first answer"  # labs.jobs.record_probe's words
# The template contract's outputs (README): (name, required). Shown present or missing, never their values.
CONTRACT_OUTPUTS = (("public_ip", True), ("private_key", True), ("password", False), ("host_key", False),
                    ("port", False), ("check_user", False), ("check_private_key", False))
# The phases an author sees, each reached at an event: (name, does this event reach it).
PHASES = (
    ("queued", lambda e: e.reason == LAUNCHED),
    ("created", lambda e: e.to_state == State.STARTING and e.from_state != State.STARTING),
    ("outputs_read", lambda e: e.reason == OUTPUTS_READ),
    ("port_reachable", lambda e: e.to_state == State.READY and e.from_state != State.READY),
)


class TestLabRefused(Exception):
    """No test lab now: ``reason`` is DISABLED or CAPPED (``count`` live of ``cap``)."""

    DISABLED, CAPPED = "disabled", "capped"

    def __init__(self, reason: str, count: int = 0, cap: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.count, self.cap = reason, count, cap


@dataclass(frozen=True)
class TestLabView:
    """What the author sees of their test lab: no secret in here, only whether outputs are there."""

    status: LabStatus
    phases: tuple[tuple[str, float | None], ...]  # (phase, seconds from the launch when reached)
    outputs: tuple[tuple[str, bool, str], ...]  # (output, required, "present" | "missing" | "recorded")
    delete_by: datetime | None


def lab_key(usage_id: str) -> str:
    """The test lab's key for a block: its usage id, or a digest of it when too long for the column."""
    key = TEST_LAB_PREFIX + usage_id
    return key if len(key) <= 255 else TEST_LAB_PREFIX + hashlib.sha256(usage_id.encode()).hexdigest()


def live(course_run: str) -> Any:
    """The course run's test labs that hold or will hold a stack (the cap counts them): all but stopped."""
    return (Lab.objects.filter(course_run=course_run, lab_key__startswith=TEST_LAB_PREFIX)
            .exclude(desired=Desired.DELETED))


def _lock_name(course_run: str) -> str:
    """The row whose lock serialises test launches of one course run (the cap's count)."""
    return "studio-test:" + hashlib.sha256(course_run.encode()).hexdigest()[:40]


def launch(user: Any, spec: LabSpec, *, actor: str) -> LabStatus:
    """Launch the author's test lab from ``spec`` (its lab key from :func:`lab_key`), or refuse.

    A test lab on its way up from the same settings is left as it is; one from other
    settings is rebuilt (deleted, then created from these), a failed one is tried again.
    """
    settings = get_settings()
    if not settings.studio_test_labs:
        raise TestLabRefused(TestLabRefused.DISABLED)
    spec = replace(spec, tags=(CLOUD_TAG,), delete_timeout=settings.studio_test_lab_timeout)
    # The lock's row is made in a transaction of its own: inserts racing on a unique key inside
    # the transaction that then locks are how MariaDB deadlocks (as placement's ProviderLock rows).
    ProviderLock.objects.get_or_create(name=_lock_name(spec.course_run))
    return learner.retrying_deadlocks(lambda: _launch(user, spec, actor, settings))


def _launch(user: Any, spec: LabSpec, actor: str, settings: LabSettings) -> LabStatus:
    """The launch, holding the course run's lock while the cap is counted and the row made."""
    now = timezone.now()
    with transaction.atomic():
        ProviderLock.objects.select_for_update().filter(name=_lock_name(spec.course_run)).first()
        mine = Lab.objects.filter(learner=user, course_run=spec.course_run, lab_key=spec.lab_key).first()
        others = live(spec.course_run).exclude(pk=mine.pk if mine else None).count()
        cap = settings.studio_test_labs_per_course
        if cap is not None and others >= cap:
            raise TestLabRefused(TestLabRefused.CAPPED, others, cap)
        request, fresh = _request(mine, spec)
        status = request(user, spec, actor=actor)
        lab = Lab.objects.get(pk=status.lab_id)
        kept: dict[str, Any] = {}
        if fresh:  # delete_by counts from this launch (the request set it so)
            LabEvent.record(lab, actor=actor, reason=LAUNCHED, at=now)
        elif mine is not None and mine.delete_by is not None:
            kept["delete_by"] = mine.delete_by  # pressing again never keeps a test lab longer
        # Never suspended for idleness (no page keeps it alive): deleted at its delete_by.
        Lab.objects.filter(pk=lab.pk).update(idle_at=None, **kept)
    return status


def _request(mine: Lab | None, spec: LabSpec) -> tuple[Any, bool]:
    """How to bring the author's test lab up from ``spec``, and whether that is a fresh launch."""
    if mine is None or mine.desired == Desired.DELETED or mine.state == State.DELETED:
        return learner.request_launch, True
    if mine.state == State.FAILED:
        return learner.retry, True
    built = mine.blueprint.digest if mine.blueprint_id else None
    if mine.state != State.REQUESTED and built != blueprint_digest(spec.blueprint()):
        return learner.request_reset, True  # the author changed the lab since: build it again
    return learner.request_launch, False  # already on its way up from these settings


def stop(user: Any, course_run: str, key: str, *, actor: str) -> LabStatus | None:
    """Delete the author's test lab now; None if there is none."""
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(learner=user, course_run=course_run, lab_key=key).first()
        if lab is None:
            return None
        if lab.desired != Desired.DELETED:
            Lab.objects.filter(pk=lab.pk).update(desired=Desired.DELETED.value)
            lab.desired = Desired.DELETED.value
            LabEvent.record(lab, actor=actor, reason=STOPPED)
            send_after_commit(learner.ADVANCE_TASK, [[lab.pk]], queue=get_settings().queues.calls)
    return learner.status_of(lab)


def view(user: Any, course_run: str, key: str) -> TestLabView | None:
    """The author's test lab as Studio shows it; None if they never launched one here."""
    lab = Lab.objects.filter(learner=user, course_run=course_run, lab_key=key).first()
    if lab is None:
        return None
    events = list(LabEvent.objects.filter(lab=lab).order_by("at", "id"))
    starts = [i for i, e in enumerate(events) if e.reason == LAUNCHED]
    run = events[starts[-1]:] if starts else []
    return TestLabView(learner.status_of(lab), _phases(run), _outputs(lab, run), lab.delete_by)


def _phases(events: list[LabEvent]) -> tuple[tuple[str, float | None], ...]:
    started = events[0].at if events else None
    phases = []
    for name, reached in PHASES:
        at = next((e.at for e in events if reached(e)), None)
        phases.append((name, (at - started).total_seconds() if at and started else None))
    return tuple(phases)


def _outputs(lab: Lab, events: list[LabEvent]) -> tuple[tuple[str, bool, str], ...]:
    """Which of the contract's outputs the lab gave (after its outputs were read), never their values."""
    if not any(e.reason == OUTPUTS_READ for e in events):
        return ()
    secret = set(lab.other_secrets()) | {n for n in ("private_key", "password") if getattr(lab, n)}
    recorded = any(e.reason.startswith(HOST_KEY_RECORDED) for e in events)
    shown = []
    for name, required in CONTRACT_OUTPUTS:
        present = name in secret or lab.outputs.get(name) not in (None, "")
        state = "recorded" if name == "host_key" and recorded else "present" if present else "missing"
        shown.append((name, required, state))
    return tuple(shown)


__all__ = ["CLOUD_TAG", "TestLabRefused", "TestLabView", "lab_key", "launch", "live", "stop", "view"]
