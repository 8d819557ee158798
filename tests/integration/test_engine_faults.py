"""Self-healing: whatever crashes or fails, every lab converges and no stack leaks.

Real Celery workers and beat on a real Redis, against the HTTP cloud fake. After
each campaign every lab must reach what it should be, none may be stuck in a
transitional state, and the cloud's stacks must be exactly the live rows' stacks.
Work lost with a worker, the broker or the database is noticed within the
acceptance window, not the state deadlines (the lost-job tests keep the defaults):
those tests assert the time to converge.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time

import pytest
from django import db

from labxblock import labs
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import LearnerView, lab_spec, recovery_budget, time_to, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def launch(engine, count: int, prefix: str = "learner") -> list[int]:
    spec = lab_spec(engine.lab_port.port)
    users = [engine.user(f"{prefix}{i}") for i in range(count)]
    ids = [labs.request_launch(user, spec, actor="learner").lab_id for user in users]
    db.connections.close_all()
    return ids


def all_in(ids: list[int], state: State) -> bool:
    return Lab.objects.filter(pk__in=ids, state=state).count() == len(ids)


def where(ids: list[int]) -> list[tuple]:
    """Each lab's state, desired state, attempts and last reason: what a timeout should show."""
    fields = ("pk", "state", "desired", "provider", "attempts", "deadline_at", "next_attempt_at",
              "status_reason")
    return list(Lab.objects.filter(pk__in=ids).order_by("pk").values_list(*fields))


# What a learner launching a lab may read while a lost create is found and made again: never
# "Removing your lab", never a failure.
LAUNCHING = {"queued", "creating", "starting", "ready"}


def all_ready_watched(ids: list[int], view: LearnerView):
    """A predicate for ``time_to``: every lab ready, looking through the learners' eyes on the way."""
    def ready() -> bool:
        view.look()
        return all_in(ids, State.READY)
    return ready


def assert_no_leak(engine) -> None:
    live = set(Lab.objects.exclude(state=State.DELETED).values_list("stack_name", flat=True))
    assert engine.stacks() == live


def test_worker_killed_between_the_cloud_call_and_the_database_update(engine_factory, celery_processes):
    celery_processes.extra_env["LABXBLOCK_TEST_VISIBILITY_TIMEOUT"] = "10"  # redelivery, as in production
    engine = engine_factory(workers=1)
    engine.cloud.configure(answer_delay_seconds=5)  # creates are done at the cloud, answers still in flight
    ids = launch(engine, 3)
    wait_for("three creates in flight", lambda: engine.cloud.counters().get("stack_create", 0) >= 3, 20)

    celery_processes.workers[0].signal(signal.SIGKILL)  # the whole worker, children and all
    celery_processes.workers[0].stop()
    # The worker recorded nothing; the reconciler may already have adopted stacks from its list.
    engine.cloud.configure(answer_delay_seconds=0)
    celery_processes.start_worker(concurrency=4)

    wait_for("every lab ready", lambda: all_in(ids, State.READY), 60, explain=lambda: where(ids))
    assert len(engine.stacks()) == 3  # adopted, never created twice
    assert_no_leak(engine)


def test_broker_restarted_in_the_middle_of_launches(engine_factory, redis_server, celery_processes):
    engine = engine_factory(workers=1)
    # Now and then a Celery worker exits on a broker restart (kombu's Redis transport fails to
    # close its lost connection: "Unrecoverable error: AttributeError"); in production its
    # supervisor starts it again, as here. Our part: nothing stuck or leaked either way.
    celery_processes.supervise()
    engine.cloud.configure(delays={"create": 2})
    ids = launch(engine, 5)
    redis_server.restart()  # queued tasks are lost: the server keeps nothing on disk
    more = launch(engine, 3, prefix="late")  # while workers and beat reconnect
    everyone = ids + more
    wait_for("every lab ready", lambda: all_in(everyone, State.READY), 90, explain=lambda: where(everyone))
    assert_no_leak(engine)


def test_a_cloud_failing_one_call_in_five_still_converges_without_leaks(engine_factory, cloud_fake):
    provider = {"type": "openstack", **cloud_fake.provider_config, "read_timeout": 1.5, "connect_timeout": 1}
    engine = engine_factory(providers={"default": provider}, workers=1)
    engine.cloud.configure(error_rate=0.1, error_status=503, timeout_rate=0.1, timeout_seconds=3)
    ids = launch(engine, 6)
    wait_for("every lab ready", lambda: all_in(ids, State.READY), 150, explain=lambda: where(ids))

    Lab.objects.filter(pk__in=ids).update(desired=Desired.SUSPENDED)
    wait_for("every lab suspended", lambda: all_in(ids, State.SUSPENDED), 150, explain=lambda: where(ids))
    Lab.objects.filter(pk__in=ids).update(desired=Desired.DELETED)
    wait_for("every lab deleted", lambda: all_in(ids, State.DELETED), 150, explain=lambda: where(ids))

    counters = engine.cloud.counters()
    assert counters.get("injected_503", 0) + counters.get("injected_timeout", 0) > 0  # faults happened
    engine.cloud.configure(error_rate=0, timeout_rate=0)
    assert_no_leak(engine)
    assert not engine.stacks()


# --- lost jobs: noticed within the acceptance window, with the default deadlines ---------------

DEFAULT_DEADLINES: dict = {}  # state_deadline_seconds: the defaults (creating 1,200 s)


def test_a_worker_killed_holding_its_creates_costs_no_more_than_the_acceptance_window(
        engine_factory, celery_processes):
    engine = engine_factory(workers=1, state_deadline_seconds=DEFAULT_DEADLINES)
    engine.cloud.configure(create_latency_seconds=4)  # the create requests are held by the worker…
    ids = launch(engine, 3)
    wait_for("three creates in flight", lambda: engine.cloud.counters().get("stack_create", 0) >= 3, 20)
    celery_processes.workers[0].signal(signal.SIGKILL)  # …when its main process is killed
    celery_processes.workers[0].stop()
    view = LearnerView(ids)
    assert set(view.look().values()) == {("creating", "Creating your lab")}
    celery_processes.start_calls_worker()
    # The cloud finished what it was asked (as Heat does); nobody recorded it. Redelivery would
    # take the broker's visibility timeout (an hour here): the engine does not wait for it.
    took = time_to("every lab ready", all_ready_watched(ids, view),
                   recovery_budget(engine.settings, cloud_seconds=10), explain=lambda: where(ids))
    print(f"\nworker killed holding 3 creates: all ready {took:.1f} s after a new worker started; "
          f"learners read {view.seen}")
    assert view.phases() <= LAUNCHING
    assert len(engine.stacks()) == 3  # adopted, never created twice
    assert_no_leak(engine)


def test_calls_lost_with_an_emptied_broker_are_issued_again_within_the_acceptance_window(
        engine_factory, redis_server, celery_processes):
    settings = {"acceptance_window_seconds": 10, "state_deadline_seconds": DEFAULT_DEADLINES}
    engine = engine_factory(workers=0, **settings)  # the creates wait on the calls queue…
    celery_processes.supervise()  # (a broker restart may make a Celery process exit)
    ids = launch(engine, 3)
    wait_for("three creates issued", lambda: all_in(ids, State.CREATING), 30, explain=lambda: where(ids))
    redis_server.restart()  # …and are lost: the server keeps nothing on disk
    lost_at = time.monotonic()
    view = LearnerView(ids)
    assert set(view.look().values()) == {("creating", "Creating your lab")}
    celery_processes.start_calls_worker()
    took = time_to("every lab ready", all_ready_watched(ids, view),
                   recovery_budget(engine.settings, cloud_seconds=10), explain=lambda: where(ids))
    print(f"\nbroker emptied: all ready {time.monotonic() - lost_at:.1f} s after the creates were lost")
    assert took < 60  # not the 1,200 s deadline
    assert view.phases() <= LAUNCHING
    assert engine.cloud.counters()["stack_create"] == 3
    for lab in Lab.objects.filter(pk__in=ids):
        event = LabEvent.objects.filter(lab=lab, reason="not_accepted").first()
        assert event is not None and (event.from_state, event.to_state) == ("creating", "creating")
        assert lab.reissues >= 1 and lab.attempts == 0  # a lost call is no failure of the cloud
    assert_no_leak(engine)


def test_a_create_that_got_no_answer_is_not_sent_again_while_the_cloud_makes_it(engine_factory, cloud_fake):
    provider = {"type": "openstack", **cloud_fake.provider_config, "read_timeout": 1, "connect_timeout": 1}
    engine = engine_factory(providers={"default": provider}, workers=1,
                            state_deadline_seconds=DEFAULT_DEADLINES)
    # Each create request is answered after 3 s, long after the worker stopped waiting (as Heat, loaded,
    # answers a create only once it has stored the template); the stack then takes 5 s.
    engine.cloud.configure(fault_kinds=["stack_create"], timeout_rate=1.0, timeout_seconds=3,
                           delays={"create": 5})
    ids = launch(engine, 2)
    view = LearnerView(ids)
    took = time_to("every lab ready", all_ready_watched(ids, view),
                   recovery_budget(engine.settings, cloud_seconds=8), explain=lambda: where(ids))
    print(f"\ncreates unanswered: all ready {took:.1f} s after the launches")
    counters = engine.cloud.counters()
    assert counters["injected_timeout"] == counters["stack_create"] == 2  # one request each, no retry
    assert not LabEvent.objects.filter(lab_id__in=ids, reason="not_accepted").exists()
    assert view.phases() <= LAUNCHING
    assert_no_leak(engine)


@contextlib.contextmanager
def database_locked():
    """Hold SQLite's write lock from outside, as another busy process would: writers time out."""
    path = db.connections["default"].settings_dict["NAME"]
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    con.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


def test_a_database_error_in_a_cloud_call_is_retried_not_dropped(engine_factory, celery_processes):
    assert db.connection.vendor == "sqlite"  # the SQLite suite: its lock makes the database refuse
    celery_processes.extra_env["LABXBLOCK_TEST_SQLITE_TIMEOUT"] = "0.5"  # "database is locked" soon
    engine = engine_factory(workers=0, state_deadline_seconds=DEFAULT_DEADLINES)
    ids = launch(engine, 2)
    wait_for("two creates issued", lambda: all_in(ids, State.CREATING), 30, explain=lambda: where(ids))
    db.connections.close_all()
    with database_locked():
        worker = celery_processes.start_calls_worker()
        wait_for("a job retried for the database",
                 lambda: "database is locked" in worker.log_path.read_text(errors="replace"), 60)
    # Retried in seconds, as a temporary cloud error is: long before a lost call's 45 s window.
    view = LearnerView(ids)
    took = time_to("every lab ready", all_ready_watched(ids, view), 30, explain=lambda: where(ids))
    assert view.phases() <= LAUNCHING
    print(f"\ndatabase refused the creates' jobs: all ready {took:.1f} s after it came back")
    log = worker.log_path.read_text(errors="replace")
    assert "Task labxblock.tasks.perform_job" in log and " retry: Retry in" in log
    assert not LabEvent.objects.filter(lab_id__in=ids, reason="not_accepted").exists()
    assert engine.cloud.counters()["stack_create"] == 2
    assert_no_leak(engine)


# --- the database away while calls are in flight ---------------------------------------------

OUTAGE_SECONDS = 15


@pytest.mark.mariadb
def test_mariadb_stopped_while_suspends_and_resumes_are_in_flight(engine_factory, mariadb):
    engine = engine_factory(workers=1, state_deadline_seconds=DEFAULT_DEADLINES)
    ids = launch(engine, 4)
    wait_for("every lab ready", lambda: all_in(ids, State.READY), 60, explain=lambda: where(ids))
    pausing, waking = ids[:2], ids[2:]
    Lab.objects.filter(pk__in=waking).update(desired=Desired.SUSPENDED)
    wait_for("two labs suspended", lambda: all_in(waking, State.SUSPENDED), 60, explain=lambda: where(ids))

    # Suspends and resumes take the cloud 8 s; the workers wait 4 s for each answer.
    engine.cloud.configure(delays={"suspend": 8, "resume": 8}, answer_delay_seconds=4)
    before = engine.cloud.counters()
    Lab.objects.filter(pk__in=pausing).update(desired=Desired.SUSPENDED)  # as the idle tick marks them
    for lab in Lab.objects.filter(pk__in=waking).select_related("learner"):  # their learners are back
        labs.request_launch(lab.learner, lab_spec(engine.lab_port.port), actor="learner")

    def sent(kind: str) -> int:
        return engine.cloud.counters().get(kind, 0) - before.get(kind, 0)

    wait_for("the calls at the cloud", lambda: sent("stack_suspend") >= 2 and sent("stack_resume") >= 2, 30,
             explain=lambda: where(ids))
    view = LearnerView(ids)
    shown = view.look()
    assert {shown[i] for i in pausing} == {("suspending", "Pausing your lab")}
    assert {shown[i] for i in waking} == {("resuming", "Waking your lab up")}
    db.connections.close_all()
    stopped = time.monotonic()
    mariadb.halt()  # while the workers wait for the cloud's answers
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    mariadb.start_again()
    print(f"\nMariaDB away {time.monotonic() - stopped:.1f} s")
    engine.cloud.configure(answer_delay_seconds=0)

    def converged() -> bool:
        view.look()
        return all_in(pausing, State.SUSPENDED) and all_in(waking, State.READY)

    took = time_to("every lab where its learner wants it", converged,
                   recovery_budget(engine.settings, cloud_seconds=8), explain=lambda: where(ids))
    print(f"all converged {took:.1f} s after MariaDB was back; learners read {view.seen}")
    assert all(phase in {"suspending", "suspended"} for i in pausing for phase, _ in view.seen[i])
    assert all(phase in {"resuming", "starting", "ready"} for i in waking for phase, _ in view.seen[i])
    assert not Lab.objects.filter(pk__in=ids, attempts__gt=0).exists()  # no failure counted
    assert sent("stack_create") == 0  # nothing was rebuilt
    assert_no_leak(engine)
