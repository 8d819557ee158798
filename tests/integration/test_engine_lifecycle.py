"""A learner's lab lives and dies on its own: launch, ready, idle suspend, resume, reap."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from labxblock import labs
from labxblock.lifecycle import State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import lab_spec, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def lab_state(lab_id: int) -> str:
    return Lab.objects.values_list("state", flat=True).get(pk=lab_id)


def test_launch_reaches_ready_with_outputs_and_encrypted_secrets(engine_factory):
    engine = engine_factory()
    learner = engine.user("ada")
    spec = lab_spec(engine.lab_port.port)

    status = labs.request_launch(learner, spec, actor="learner")
    assert status.phase in ("queued", "creating")
    wait_for("the lab to be ready", lambda: lab_state(status.lab_id) == State.READY, timeout=30)

    lab = Lab.objects.get(pk=status.lab_id)
    assert lab.ip == "127.0.0.1" and lab.port == engine.lab_port.port
    assert lab.password and lab.private_key  # decrypted on read
    assert "password" not in lab.outputs and "private_key" not in lab.outputs
    access = labs.terminal_access(learner, spec.course_run, spec.lab_key)
    assert access is not None and access.port == engine.lab_port.port and access.password == lab.password
    assert lab.launch_seconds is not None and lab.launch_seconds < 30
    moves = list(LabEvent.objects.filter(lab=lab).values_list("to_state", flat=True))
    assert moves[-1] == State.READY and State.CREATING in moves and State.STARTING in moves
    assert engine.cloud.counters().get("stack_create") == 1


def test_idle_lab_is_suspended_and_resumes_on_return(engine_factory):
    engine = engine_factory()
    learner = engine.user("grace")
    spec = lab_spec(engine.lab_port.port, suspend_timeout=3)
    lab_id = labs.request_launch(learner, spec, actor="learner").lab_id
    wait_for("ready", lambda: lab_state(lab_id) == State.READY, timeout=30)

    # Keepalives hold it up past its suspend timeout…
    for _ in range(5):
        assert labs.keepalive(learner, spec.course_run, spec.lab_key, suspend_timeout=3)
        assert lab_state(lab_id) == State.READY
        time.sleep(1)
    # …and silence lets the beat suspend it.
    wait_for("idle suspension", lambda: lab_state(lab_id) == State.SUSPENDED, timeout=20)
    assert engine.cloud.counters().get("stack_suspend") == 1

    labs.request_launch(learner, spec, actor="learner")
    wait_for("resumed and ready", lambda: lab_state(lab_id) == State.READY, timeout=30)
    assert engine.cloud.counters().get("stack_resume") == 1
    assert engine.cloud.counters().get("stack_create") == 1  # resumed where it lives, not rebuilt


def test_unused_lab_is_deleted_by_the_reaper_but_a_used_one_is_not(engine_factory):
    engine = engine_factory(reap_interval_seconds=1)
    spec = lab_spec(engine.lab_port.port)
    unused = labs.request_launch(engine.user("unused"), spec, actor="learner").lab_id
    used_learner = engine.user("used")
    used = labs.request_launch(used_learner, spec, actor="learner").lab_id
    wait_for("both ready", lambda: {lab_state(unused), lab_state(used)} == {State.READY}, timeout=30)

    Lab.objects.filter(pk__in=[unused, used]).update(delete_by=timezone.now() - timedelta(seconds=1))
    labs.keepalive(used_learner, spec.course_run, spec.lab_key)  # use moves delete_by forward
    wait_for("the unused lab deleted", lambda: lab_state(unused) == State.DELETED, timeout=30)
    assert lab_state(used) == State.READY
    assert engine.stacks() == {Lab.objects.get(pk=used).stack_name}


def test_reset_deletes_the_stack_and_builds_a_fresh_one(engine_factory):
    engine = engine_factory()
    learner = engine.user("resetter")
    spec = lab_spec(engine.lab_port.port)
    lab_id = labs.request_launch(learner, spec, actor="learner").lab_id
    wait_for("ready", lambda: lab_state(lab_id) == State.READY, timeout=30)
    first_stack = Lab.objects.get(pk=lab_id).provider_state["id"]

    status = labs.request_reset(learner, spec, actor="learner")
    assert status.phase in ("deleting", "queued", "creating")

    def rebuilt():
        lab = Lab.objects.get(pk=lab_id)
        return lab.state == State.READY and lab.provider_state.get("id") not in (None, first_stack)

    wait_for("a fresh stack, ready", rebuilt, timeout=45)
    counters = engine.cloud.counters()
    assert (counters.get("stack_delete"), counters.get("stack_create")) == (1, 2)
    assert engine.stacks() == {Lab.objects.get(pk=lab_id).stack_name}  # the old one is gone
    reasons = list(LabEvent.objects.filter(lab_id=lab_id).values_list("reason", flat=True))
    assert "reset" in reasons
