"""Races between a lab's calls: a learner's reset against a create in flight, copies of one call.

Real Celery workers and beat on a real Redis, against the HTTP cloud fake, with the
site's default deadlines: what a race costs is told by the acceptance window, never
by a state deadline.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django import db
from django.contrib.auth import get_user_model
from django.utils import timezone

from labxblock import clouds, conf, labs, lifecycle, tasks
from labxblock.labs import calls, jobs, observe
from labxblock.labs.engine import Job, Observation
from labxblock.lifecycle import Action, Desired, State
from labxblock.models import Lab, LabEvent
from labxblock.providers.base import PermanentError, StackSpec
from tests.engine_harness import (
    LAB_HOST_KEY,
    active_lab_settings,
    lab_settings,
    lab_spec,
    recovery_budget,
    time_to,
    wait_for,
    wait_for_stack,
)

# The workers' tests need Redis; the rest run on the test database, MariaDB too (its row locks).
pytestmark = [pytest.mark.slow]
SECOND = timedelta(seconds=1)
DEFAULT_DEADLINES: dict = {}  # state_deadline_seconds: the defaults (deleting 1,200 s)


def where(lab_id: int) -> tuple:
    fields = ("state", "desired", "attempts", "reissues", "call_issued_at", "call_accepted_at", "raw_status")
    return Lab.objects.filter(pk=lab_id).values_list(*fields).first()


@pytest.mark.redis
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


@pytest.mark.django_db
@pytest.mark.mariadb
def test_a_stale_copy_of_a_call_changes_nothing_and_its_failure_is_never_counted():
    """The suspend's first copy hangs in the cloud; past its window the observer issues it again. The
    first copy then fails for good, or its message is delivered again: neither speaks for the lab."""
    now = timezone.now()
    window = conf.get_settings().acceptance_window_seconds * SECOND
    user = get_user_model().objects.create_user(username="pausing")
    lab = Lab.objects.create(
        learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default", state=State.SUSPENDING,
        desired=Desired.SUSPENDED, state_changed_at=now - 2 * window, provider_state={"id": "id-1"},
        deadline_at=lifecycle.deadline_for(State.SUSPENDING, now - 2 * window),
        call_issued_at=now - 2 * window)
    sent = Job(lab.pk, Action.SUSPEND, State.SUSPENDING, issued=now - 2 * window)
    first = calls.started(sent, now - window - SECOND)  # its worker starts it: the window counts from here
    assert first is not None and first.issued == now - window - SECOND

    (target,) = observe.targets("default", now)
    (reissued,) = observe.apply("default", {target: Observation(State.READY, "RESUME_COMPLETE")}, now)
    assert (reissued.action, reissued.issued) == (Action.SUSPEND, now)  # no sign of it: made again

    before = Lab.objects.filter(pk=lab.pk).values().get()
    assert tasks._give_up(first, PermanentError("the cloud refused the first copy")) == "failed"
    calls.accepted(first, now + SECOND)
    assert calls.retrying(first, now + 5 * SECOND) is None  # not retried either
    assert tasks.perform_job.apply(args=sent.as_args()).get() == "stale"  # redelivered: no call made
    assert Lab.objects.filter(pk=lab.pk).values().get() == before  # none of them changed the lab

    # The current call is fine: what the cloud shows while it is on its way counts no failure.
    (target,) = observe.targets("default", now + 2 * SECOND)
    observe.apply("default", {target: Observation(State.READY, "RESUME_COMPLETE")}, now + 2 * SECOND)
    current = calls.started(reissued, now + 3 * SECOND)
    assert current is not None
    calls.accepted(current, now + 4 * SECOND)
    lab.refresh_from_db()
    assert (lab.state, lab.attempts, lab.status_reason, lab.call_accepted_at) == (
        State.SUSPENDING, 0, "", now + 4 * SECOND)
    assert not LabEvent.objects.filter(lab=lab, reason__endswith="_failed").exists()


RESUMED_TEMPLATE = """heat_template_version: 2018-08-31
resources:
  vm1: {type: OS::Nova::Server, properties: {image: x, flavor: y}}
  vm2: {type: OS::Nova::Server, properties: {image: x, flavor: y}}
outputs:
  public_ip: {value: 127.0.0.1}
  port: {value: %d}
  host_key: {value: %s}
  reboot_on_resume: {value: true}
"""


def test_a_burst_of_probes_after_a_resume_reads_the_outputs_and_reboots_once(transactional_db, cloud_fake,
                                                                             lab_port):
    settings = lab_settings({"default": {"type": "openstack", **cloud_fake.provider_config}})
    with active_lab_settings(settings):
        provider = clouds.provider("default")
        user = get_user_model().objects.create_user(username="resumed")
        lab = Lab.objects.create(learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default",
                                 state=State.STARTING, state_changed_at=timezone.now(),
                                 deadline_at=lifecycle.deadline_for(State.STARTING, timezone.now()),
                                 outputs={"reboot_on_resume": "true", "host_key": LAB_HOST_KEY})
        ref = provider.create(StackSpec(name=lab.stack_name, template=RESUMED_TEMPLATE % (
            lab_port.port, LAB_HOST_KEY), tags=("labxblock-test",)))
        wait_for_stack(provider, ref, State.READY)
        provider.suspend(ref)
        wait_for_stack(provider, ref, State.SUSPENDED)
        provider.resume(ref)
        wait_for_stack(provider, ref, State.READY)
        # Resumed: its address is to be read again (engine._fields_for_move), its servers rebooted.
        Lab.objects.filter(pk=lab.pk).update(provider_state=provider.get_state(ref), ip="")
        cloud_fake.configure(latency_seconds=0.3)  # the probes overlap
        db.connections.close_all()

        def probe(_: int) -> str:
            try:
                return tasks.carry_out(Job(lab.pk, Action.PROBE, State.STARTING))
            finally:
                db.connection.close()

        with ThreadPoolExecutor(6) as pool:  # a burst: passes and observations each sent one
            outcomes = list(pool.map(probe, range(6)))
    print(f"\nsix probes at once after a resume: {outcomes}")
    assert sorted(cloud_fake.reboots().values()) == [1, 1]  # each server rebooted once, not six times
    assert LabEvent.objects.filter(lab_id=lab.pk, reason=jobs.OUTPUTS_READ).count() == 1
    assert Lab.objects.get(pk=lab.pk).state == State.READY and "done" in outcomes
