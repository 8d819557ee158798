"""One stack per learner and lab, and capacity that concurrent launches cannot overshoot."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django import db

from labxblock import labs
from labxblock.lifecycle import State
from labxblock.models import Lab
from tests.cloudfake.server import CloudFake
from tests.engine_harness import lab_spec, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.mariadb, pytest.mark.slow]


def _launch_many(args: tuple[int, int, int]) -> int:
    """In a child process: ``count`` concurrent launch requests for one learner's lab."""
    user_id, port, count = args
    from django.contrib.auth import get_user_model

    db.connections.close_all()  # never share the parent's connection across fork
    user = get_user_model().objects.get(pk=user_id)
    spec = lab_spec(port)
    with ThreadPoolExecutor(count) as pool:
        ids = set(pool.map(lambda _: labs.request_launch(user, spec, actor="learner").lab_id, range(count)))
    db.connections.close_all()
    return len(ids)


def test_fifty_concurrent_launches_from_several_processes_create_one_stack(engine_factory):
    engine = engine_factory(workers=1)
    learner = engine.user("concurrent")
    db.connections.close_all()
    with multiprocessing.get_context("fork").Pool(5) as pool:
        distinct = pool.map(_launch_many, [(learner.pk, engine.lab_port.port, 10)] * 5)
    assert distinct == [1] * 5  # every request in every process saw the same lab

    ready = Lab.objects.filter(learner=learner, state=State.READY)
    lab = wait_for("one ready lab", ready.first, 30)
    assert Lab.objects.filter(learner=learner).count() == 1
    assert engine.cloud.counters().get("stack_create") == 1
    assert engine.stacks() == {lab.stack_name}


def test_capacity_holds_under_concurrent_launches_and_overflow_goes_to_the_next_provider(engine_factory):
    second = CloudFake()
    second.start()
    try:
        providers = {
            "default": {"type": "openstack", "capacity": 3, **second.provider_config},
            "second": {"type": "openstack", **second.provider_config},
        }
        # Both names reach one fake: the count is ours, not the cloud's quota.
        engine = engine_factory(providers=providers, workers=1)
        learners = [engine.user(f"learner{i}") for i in range(8)]
        spec = lab_spec(engine.lab_port.port, providers=("default", "second"))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda u: labs.request_launch(u, spec, actor="learner"), learners))
        db.connections.close_all()
        wait_for("eight ready labs", lambda: Lab.objects.filter(state=State.READY).count() == 8, 45)
        placed = dict(Lab.objects.values_list("provider").annotate(n=db.models.Count("id")))
        assert placed == {"default": 3, "second": 5}
    finally:
        second.stop()


def test_quota_error_falls_through_to_the_next_provider_and_resume_stays_there(engine_factory, cloud_fake):
    full = CloudFake(quota_exceeded=True)
    full.start()
    try:
        engine = engine_factory(providers={
            "default": {"type": "openstack", **full.provider_config},
            "spare": {"type": "openstack", **cloud_fake.provider_config},
        })
        learner = engine.user("overflow")
        spec = lab_spec(engine.lab_port.port, providers=("default", "spare"))
        lab_id = labs.request_launch(learner, spec, actor="learner").lab_id
        wait_for("ready on the spare", lambda: Lab.objects.filter(pk=lab_id, state=State.READY).exists(), 30)
        lab = Lab.objects.get(pk=lab_id)
        assert (lab.provider, lab.tried_providers) == ("spare", ["default"])
        assert full.counters().get("stack_create") == 1 and not full.cloud.listing([])

        # Suspended where it lives, resumed where it lives: never moved to a provider with room.
        full.configure(quota_exceeded=False)
        Lab.objects.filter(pk=lab_id).update(desired="suspended")
        wait_for("suspended", lambda: Lab.objects.filter(pk=lab_id, state=State.SUSPENDED).exists(), 30)
        labs.request_launch(learner, spec, actor="learner")
        wait_for("resumed", lambda: Lab.objects.filter(pk=lab_id, state=State.READY).exists(), 30)
        assert Lab.objects.get(pk=lab_id).provider == "spare"
        assert cloud_fake.counters().get("stack_resume") == 1 and full.counters().get("stack_create") == 1
    finally:
        full.stop()


def test_every_provider_refusing_fails_the_lab_with_a_reason(engine_factory, cloud_fake):
    cloud_fake.configure(quota_exceeded=True)
    engine = engine_factory()
    learner = engine.user("unlucky")
    spec = lab_spec(engine.lab_port.port)
    lab_id = labs.request_launch(learner, spec, actor="learner").lab_id
    wait_for("failed", lambda: Lab.objects.filter(pk=lab_id, state=State.FAILED).exists(), 30)
    status = labs.get_status(learner, spec.course_run, spec.lab_key)
    assert status.phase == "failed" and status.reason == "create_failed"
    assert "maximum stacks" in Lab.objects.get(pk=lab_id).status_reason  # the operator sees why
    assert not engine.stacks()

    # Retry once the cloud has room again: a fresh budget of providers.
    cloud_fake.configure(quota_exceeded=False)
    labs.retry(learner, spec, actor="learner")
    wait_for("ready after retry", lambda: Lab.objects.filter(pk=lab_id, state=State.READY).exists(), 30)


def _connections_to_the_database() -> int:
    with db.connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()")
        return int(cursor.fetchone()[0])


def test_calls_waiting_on_the_cloud_hold_no_database_connection(engine_factory, mariadb):
    # Each waiting thread used to hold one: the database's max_connections capped the calls in flight.
    burst = 12
    engine = engine_factory(calls_threads=burst)
    learners = [engine.user(f"waiting{i}") for i in range(burst)]
    spec = lab_spec(engine.lab_port.port)
    labs.request_launch(learners[0], spec, actor="learner")  # a warm worker: it holds a token
    wait_for("the first lab ready", lambda: Lab.objects.filter(state=State.READY).exists(), 30)
    before = _connections_to_the_database()
    engine.cloud.configure(create_latency_seconds=10)
    for learner in learners[1:]:
        labs.request_launch(learner, spec, actor="learner")
    wait_for("the creates held at the cloud", lambda: engine.cloud.counters().get("stack_create", 0) == burst,
             20)
    during = []
    for _ in range(10):
        during.append(_connections_to_the_database())
        time.sleep(0.3)
    assert max(during) <= before + 3, f"{burst - 1} creates at the cloud, connections {before} -> {during}"
    ready = Lab.objects.filter(state=State.READY)
    wait_for("every lab ready", lambda: ready.count() == burst, 60)
