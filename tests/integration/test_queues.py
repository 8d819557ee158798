"""Each kind of task on its own queue, whatever the host's router says.

The test settings route like edx-platform, with a router stricter than edx-platform's:
it claims every task for the platform's default queue, ``edx.lms.core.default``. The
workers here consume only labxblock's queues, as the README's workers do, so a task
that did not name its queue (a send, a retry) would sit on the default queue unrun.
"""

from __future__ import annotations

import re

import pytest
from django import db

from labxblock import labs
from labxblock.lifecycle import State
from labxblock.models import Lab
from tests.engine_harness import lab_spec, wait_for
from tests.services.celery_procs import QUEUES

pytestmark = [pytest.mark.redis, pytest.mark.slow]
PLATFORM_DEFAULT_QUEUE = "edx.lms.core.default"
CALL_TASKS = ("labxblock.tasks.perform_job", "labxblock.tasks.advance_lab", "labxblock.tasks.delete_orphan",
              "labxblock.tasks.observe", "labxblock.tasks.audit")
TICK_TASKS = ("labxblock.tasks.reconcile", "labxblock.tasks.suspend_idle", "labxblock.tasks.reap")


@pytest.fixture
def broker(redis_server):
    """The test's Redis, emptied after the test: messages left on a queue no worker took."""
    yield redis_server
    with redis_server.client() as client:
        client.flushdb()


def ran(worker, task: str) -> list[str]:
    """Ids of ``task`` the worker finished, from its log."""
    return re.findall(rf"Task {re.escape(task)}\[([0-9a-f-]+)\] succeeded", worker.log_path.read_text())


def took_any(worker, tasks: tuple[str, ...]) -> bool:
    """Did the worker receive any of ``tasks``? (Its banner lists every task it knows.)"""
    log = worker.log_path.read_text()
    return any(f"Task {task}[" in log for task in tasks)


def tasks_in(broker, queue: str) -> list[str]:
    return [message["headers"]["task"] for message in broker.queued(queue)]


def launch(engine, name: str) -> int:
    lab_id = labs.request_launch(engine.user(name), lab_spec(engine.lab_port.port), actor="learner").lab_id
    db.connections.close_all()
    return lab_id


def test_a_ticks_worker_never_makes_a_cloud_call_and_a_calls_worker_never_runs_a_tick(
        engine_factory, celery_processes, broker):
    engine = engine_factory(workers=0, beat=False)
    ticks = celery_processes.start_ticks_worker()
    celery_processes.start_beat()
    lab_id = launch(engine, "queued")

    wait_for("three reconcile ticks", lambda: len(ran(ticks, TICK_TASKS[0])) >= 3, 30)
    # The tick placed the lab and sent its create; only a calls worker may make it.
    assert not took_any(ticks, CALL_TASKS)
    assert engine.cloud.counters().get("stack_create", 0) == 0
    waiting = tasks_in(broker, QUEUES.calls)
    assert "labxblock.tasks.advance_lab" in waiting and "labxblock.tasks.perform_job" in waiting

    calls = celery_processes.start_calls_worker()
    wait_for("the lab ready", lambda: Lab.objects.get(pk=lab_id).state == State.READY, 60)
    assert engine.cloud.counters()["stack_create"] == 1
    ticks.stop()  # beat goes on sending ticks: they wait on their queue, the calls worker never takes one
    wait_for("ticks waiting for their worker", lambda: len(tasks_in(broker, QUEUES.ticks)) >= 3, 30)
    assert ran(calls, CALL_TASKS[0]) and not took_any(calls, TICK_TASKS)
    assert broker.queued(PLATFORM_DEFAULT_QUEUE) == []


def test_a_retried_cloud_call_stays_on_the_calls_queue(engine_factory, celery_processes, broker):
    engine = engine_factory(workers=1, beat=False)  # no reconciler: only the task's own retries create
    engine.cloud.configure(fault_kinds=["stack_create"], fail_next=2, retry_after=1)
    launch(engine, "unlucky")  # advance_lab fails, hands over to perform_job, which fails and retries

    wait_for("the stack created on the third try", lambda: len(engine.stacks()) == 1, 60)
    assert engine.cloud.counters()["injected_503"] == 2
    log = celery_processes.workers[0].log_path.read_text()
    retried = re.findall(r"Task labxblock\.tasks\.perform_job\[([0-9a-f-]+)\] retry:", log)
    assert retried  # the job that made the stack records it, then says it succeeded:
    worker = celery_processes.workers[0]
    wait_for("the retried job done", lambda: retried[0] in ran(worker, CALL_TASKS[0]), 10)
    assert broker.queued(PLATFORM_DEFAULT_QUEUE) == []


def test_observations_and_probes_have_their_own_queue_and_never_wait_behind_cloud_calls(
        engine_factory, celery_processes, broker):
    engine = engine_factory(workers=0)  # ticks worker and beat; no worker takes the calls yet
    observer = celery_processes.start_observe_worker(concurrency=2)
    lab_id = launch(engine, "observed")
    # The create waits on the calls queue; the lab in flight is observed all the same.
    wait_for("two observations", lambda: len(ran(observer, "labxblock.tasks.observe")) >= 2, 30)
    assert engine.cloud.counters().get("stack_create", 0) == 0
    assert "labxblock.tasks.advance_lab" in tasks_in(broker, QUEUES.calls)
    assert not took_any(observer, ("labxblock.tasks.advance_lab",))

    calls = celery_processes.start_calls_worker(observe=False)
    wait_for("the lab ready", lambda: Lab.objects.get(pk=lab_id).state == State.READY, 60)
    # Its probe (is the lab up?) was the observe worker's: the only job on its queue.
    assert ran(observer, "labxblock.tasks.perform_job")
    assert not took_any(calls, ("labxblock.tasks.observe",))
    assert broker.queued(PLATFORM_DEFAULT_QUEUE) == []
