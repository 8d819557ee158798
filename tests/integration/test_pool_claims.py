"""Claims from a warm pool under concurrency: no two learners ever get the same stack.

Fifty learners launch at once from five processes of ten threads each (real request_launch
calls on the test run's database: SQLite, and MariaDB with ``make test-mariadb``), against a
pool of forty stacks.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django import db

from labxblock import labs
from labxblock.labs import pools
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import lab_spec, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.mariadb, pytest.mark.slow]
POOL, LEARNERS, PROCESSES = 40, 50, 5


def _launch_all(args: tuple[list[int], int, int]) -> list[tuple[int, int]]:
    """In a child process: each learner's launch in a thread of its own, ``repeat`` times each,
    all at once. Returns (learner id, the lab id their launch answered) for every call."""
    user_ids, port, repeat = args
    from django.contrib.auth import get_user_model

    db.connections.close_all()  # never share the parent's connection across fork
    users = list(get_user_model().objects.filter(pk__in=user_ids))
    spec = lab_spec(port)

    def launch(user) -> tuple[int, int]:
        try:
            return user.pk, labs.request_launch(user, spec, actor="learner").lab_id
        finally:
            db.connections.close_all()

    with ThreadPoolExecutor(len(users) * repeat) as pool:
        answers = list(pool.map(launch, users * repeat))
    db.connections.close_all()
    return answers


def _fill(engine, size: int):
    spec = lab_spec(engine.lab_port.port)
    pools.configure(course_run=spec.course_run, lab_key=spec.lab_key, size=size, keep="running")
    labs.request_launch(engine.user("staff"), spec, actor="staff")  # the pool learns the template
    wait_for(f"{size} ready pool stacks",
             lambda: Lab.objects.filter(learner__isnull=True, state=State.READY).count() == size, 60)
    return spec, set(Lab.objects.filter(learner__isnull=True).values_list("stack_name", flat=True))


def test_fifty_concurrent_first_launches_never_share_a_pool_stack(engine_factory, cloud_fake):
    cloud_fake.configure(delays={"create": 0.2, "suspend": 0.1, "resume": 0.2, "delete": 0.1})
    engine = engine_factory()
    _spec, pooled = _fill(engine, POOL)
    learners = [engine.user(f"learner{i:02d}") for i in range(LEARNERS)]
    db.connections.close_all()
    share = LEARNERS // PROCESSES
    batches = [([u.pk for u in learners[i * share:(i + 1) * share]], engine.lab_port.port, 1)
               for i in range(PROCESSES)]
    with multiprocessing.get_context("fork").Pool(PROCESSES) as procs:
        answers = [pair for batch in procs.map(_launch_all, batches) for pair in batch]

    # Each learner's launch answered with their own lab, and no lab answered two learners.
    assert len(answers) == LEARNERS and len({lab_id for _, lab_id in answers}) == LEARNERS
    owners = dict(Lab.objects.filter(pk__in=[lab for _, lab in answers]).values_list("pk", "learner_id"))
    assert all(owners[lab_id] == user_id for user_id, lab_id in answers)
    # Every stack of the pool went to exactly one learner (fifty learners for forty stacks).
    claims = LabEvent.objects.filter(reason=pools.CLAIMED)
    assert Counter(claims.values_list("stack_name", flat=True)).most_common(1)[0][1] == 1
    mine = dict(Lab.objects.filter(learner__in=learners).values_list("stack_name", "learner_id"))
    assert len(mine) == LEARNERS and pooled <= set(mine)
    assert all(mine[e.stack_name] == e.learner_id for e in claims)
    wait_for("every learner's lab ready", lambda: Lab.objects.filter(
        learner__in=learners, state=State.READY, desired=Desired.UP).count() == LEARNERS, 60)
    assert len(engine.stacks() & set(mine)) == LEARNERS


def test_one_learners_concurrent_launches_claim_one_stack(engine_factory, cloud_fake):
    cloud_fake.configure(delays={"create": 0.2, "suspend": 0.1, "resume": 0.2, "delete": 0.1})
    engine = engine_factory()
    _spec, pooled = _fill(engine, 3)
    ada = engine.user("ada")
    db.connections.close_all()
    with multiprocessing.get_context("fork").Pool(2) as procs:
        answers = [pair for batch in procs.map(_launch_all, [([ada.pk], engine.lab_port.port, 10)] * 2)
                   for pair in batch]
    assert {lab_id for _, lab_id in answers} == {Lab.objects.get(learner=ada).pk}
    assert LabEvent.objects.filter(reason=pools.CLAIMED).count() == 1
    assert Lab.objects.get(learner=ada).stack_name in pooled
    # The others went back to the pool untouched (or the pool refilled): none was lost.
    wait_for("the pool full again", lambda: Lab.objects.filter(
        learner__isnull=True, state=State.READY).exclude(desired=Desired.DELETED).count() == 3, 30)
