"""A learner's lab lives and dies on its own (launch, ready, idle suspend, resume, reap).

And what the cloud is asked meanwhile: nothing per lab at rest, only about the labs in flight.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from labxblock import labs
from labxblock.lifecycle import State
from labxblock.models import Lab, LabEvent
from labxblock.providers.base import StackSpec
from labxblock.providers.openstack import OpenStackProvider
from tests.engine_harness import lab_spec, lab_template, wait_for

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
    # The admin shows what the cloud said, not a blank left by the probe that made the lab ready.
    assert (lab.raw_status, lab.raw_reason) == ("CREATE_COMPLETE", "Stack CREATE completed successfully")
    assert lab.call_accepted_at >= lab.call_issued_at  # its worker saw the cloud take the create


def counts(engine) -> dict[str, int]:
    return engine.cloud.counters()


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Requests by kind between two readings of the fake's counters (answers' statuses left out)."""
    return {k: after[k] - before.get(k, 0) for k in after
            if after[k] != before.get(k, 0) and not k.startswith("status_")}


def test_at_rest_the_cloud_sees_nothing_but_the_audit(engine_factory):
    engine = engine_factory(reap_interval_seconds=4)
    spec = lab_spec(engine.lab_port.port)
    ids = [labs.request_launch(engine.user(f"rest{i}"), spec, actor="learner").lab_id for i in range(12)]
    wait_for("every lab ready", lambda: Lab.objects.filter(pk__in=ids, state=State.READY).count() == 12, 60)
    time.sleep(2)  # the last observation and probe finish
    before = counts(engine)
    time.sleep(12)  # a dozen reconcile ticks, three audits
    requests = delta(before, counts(engine))
    audits = requests.pop("stack_list", 0)
    assert 1 <= audits <= 4  # the audit's full list (one page), every reap interval
    assert requests.pop("stacks_listed", 0) == 12 * audits
    assert requests == {}  # nothing per lab, nothing per tick: no busy list, no read, no call


def test_a_lab_in_flight_is_followed_by_the_busy_list_and_one_read(engine_factory):
    engine = engine_factory(reap_interval_seconds=3600)  # no audit: what follows the labs is the observer
    engine.cloud.configure(delays={"create": 4})
    start = counts(engine)
    spec = lab_spec(engine.lab_port.port)
    ids = [labs.request_launch(engine.user(f"fly{i}"), spec, actor="learner").lab_id for i in range(3)]
    wait_for("the creates in progress", lambda: engine.cloud.counters().get("stack_create", 0) == 3, 20)
    wait_for("every lab ready", lambda: Lab.objects.filter(pk__in=ids, state=State.READY).count() == 3, 30)
    requests = delta(start, counts(engine))
    assert "stack_list" not in requests and requests["stack_list_busy"] >= 2  # the busy list, no full list
    # Each stack is read once when it leaves the busy list (its status) and once for its outputs.
    assert requests["stack_get"] <= 3 * 2 + 2
    before = counts(engine)
    time.sleep(4)
    assert delta(before, counts(engine)) == {}  # all at rest: the observer stops


def test_while_every_lab_in_flight_waits_for_its_create_request_the_cloud_is_not_listed(engine_factory):
    # A loaded Heat answers a create request in 20 s; listing meanwhile only adds to its load.
    engine = engine_factory(reap_interval_seconds=3600)
    engine.cloud.configure(create_latency_seconds=5, delays={"create": 2})
    spec = lab_spec(engine.lab_port.port)
    start = counts(engine)
    ids = [labs.request_launch(engine.user(f"asked{i}"), spec, actor="learner").lab_id for i in range(3)]
    wait_for("the creates at the cloud", lambda: engine.cloud.counters().get("stack_create", 0) == 3, 20)
    time.sleep(3)  # three reconcile ticks with the create requests unanswered
    assert "stack_list_busy" not in delta(start, counts(engine))
    wait_for("every lab ready", lambda: Lab.objects.filter(pk__in=ids, state=State.READY).count() == 3, 30)
    assert delta(start, counts(engine))["stack_list_busy"] >= 1  # answered: followed as before


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
    assert status.phase in ("rebuilding", "queued", "creating")  # "being prepared again", not "removing"

    def rebuilt():
        lab = Lab.objects.get(pk=lab_id)
        return lab.state == State.READY and lab.provider_state.get("id") not in (None, first_stack)

    wait_for("a fresh stack, ready", rebuilt, timeout=45)
    counters = engine.cloud.counters()
    assert (counters.get("stack_delete"), counters.get("stack_create")) == (1, 2)
    assert engine.stacks() == {Lab.objects.get(pk=lab_id).stack_name}  # the old one is gone
    reasons = list(LabEvent.objects.filter(lab_id=lab_id).values_list("reason", flat=True))
    assert "reset" in reasons


def test_the_audit_deletes_orphans_but_not_stacks_listed_deleted_already(engine_factory, cloud_fake):
    cloud_fake.configure(deleted_listed_seconds=120)  # Heat lists a deleted stack for about a minute
    stray = OpenStackProvider("stray", cloud_fake.provider_config)  # stacks with our tag, no lab row
    refs = [stray.create(StackSpec(f"lab-test-stray{i}", lab_template(1), parameters={"run": "x"},
                                   tags=("labxblock-test",))) for i in range(3)]
    stray.delete(refs[0])  # …gone already, still listed as DELETE_COMPLETE
    time.sleep(2)  # older than the grace period
    engine = engine_factory(reap_interval_seconds=2, orphan_grace_seconds=1)
    wait_for("the orphans deleted", lambda: engine.stacks() == set(), 30)
    assert engine.cloud.counters()["stack_delete"] == 3  # the test's one, then one per live orphan
    logs = "".join(w.log_path.read_text(errors="replace") for w in engine.procs.workers)
    (said,) = [line for line in logs.splitlines() if "orphan stack(s)" in line][:1]
    assert "deleting 2 orphan stack(s)" in said and "stray0" not in said


def test_orphan_deletes_keep_to_the_providers_actions_per_minute(engine_factory, cloud_fake):
    stray = OpenStackProvider("stray", cloud_fake.provider_config)
    for i in range(3):
        stray.create(StackSpec(f"lab-test-many{i}", lab_template(1), parameters={"run": "x"},
                               tags=("labxblock-test",)))
    time.sleep(2)  # older than the grace period
    providers = {"default": {"type": "openstack", "actions_per_minute": 2, **cloud_fake.provider_config}}
    engine = engine_factory(providers=providers, reap_interval_seconds=2, orphan_grace_seconds=1)
    wait_for("the orphans deleted", lambda: engine.stacks() == set(), 30)
    logs = "".join(w.log_path.read_text(errors="replace") for w in engine.procs.workers)
    said = [line.split("labxblock: ", 1)[1] for line in logs.splitlines() if "orphan stack(s)" in line]
    assert said[:3] == [
        "deleting 2 orphan stack(s) on provider default: lab-test-many0, lab-test-many1",
        "1 more orphan stack(s) on provider default wait for the next audit (actions_per_minute): "
        "lab-test-many2",
        "deleting 1 orphan stack(s) on provider default: lab-test-many2",
    ]
