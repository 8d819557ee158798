"""Races between a lab's calls: a learner's reset against a create in flight, copies of one call.

Real Celery workers and beat on a real Redis, against the HTTP cloud fake, with the
site's default deadlines: what a race costs is told by the acceptance window, never
by a state deadline.
"""

from __future__ import annotations

import pytest
from django import db

from labxblock import labs
from labxblock.lifecycle import State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import lab_spec, recovery_budget, time_to, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]
DEFAULT_DEADLINES: dict = {}  # state_deadline_seconds: the defaults (deleting 1,200 s)


def where(lab_id: int) -> tuple:
    fields = ("state", "desired", "attempts", "reissues", "call_issued_at", "call_accepted_at", "raw_status")
    return Lab.objects.filter(pk=lab_id).values_list(*fields).first()


def test_a_reset_whose_delete_came_before_the_stack_is_deleted_again_within_the_window(engine_factory):
    engine = engine_factory(workers=1, acceptance_window_seconds=10, state_deadline_seconds=DEFAULT_DEADLINES)
    engine.cloud.configure(delays={"create": 60})  # a slow stack: in progress when the reset comes
    spec = lab_spec(engine.lab_port.port)
    user = engine.user("resetter")
    lab_id = labs.request_launch(user, spec, actor="learner").lab_id
    db.connections.close_all()
    wait_for("the create taken", lambda: Lab.objects.filter(pk=lab_id, state=State.CREATING)
             .exclude(provider_state={}).exists(), 30, explain=lambda: where(lab_id))
    stack = Lab.objects.get(pk=lab_id).stack_name
    # Heat answers "not found" to a delete that comes while it still validates the create: the
    # delete's worker takes that as done, and the stack is there a moment later.
    engine.cloud.configure(not_found=[stack], fault_kinds=["stack_delete"])
    labs.request_reset(user, spec, actor="learner")
    db.connections.close_all()
    wait_for("the delete answered 'not found'",
             lambda: engine.cloud.counters().get("status_404", 0) >= 1, 20, explain=lambda: where(lab_id))
    engine.cloud.configure(not_found=[], fault_kinds=None, delays={"create": 0.3})

    took = time_to("a fresh lab ready", lambda: Lab.objects.filter(pk=lab_id, state=State.READY).exists(),
                   recovery_budget(engine.settings, cloud_seconds=15), explain=lambda: where(lab_id))
    print(f"\nreset whose delete came first: a fresh lab ready in {took:.1f} s (not the 1,200 s deadline)")
    event = LabEvent.objects.filter(lab_id=lab_id, reason="not_accepted").first()
    assert event is not None and (event.from_state, event.to_state) == ("deleting", "deleting")
    lab = Lab.objects.get(pk=lab_id)
    assert lab.reissues >= 1 and lab.attempts == 0
    assert engine.cloud.counters()["stack_delete"] >= 2
    assert engine.stacks() == {stack}  # the old one deleted, one made afresh under the lab's name
