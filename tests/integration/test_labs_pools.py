"""Warm pools with the real engine: filled, claimed, refilled, replaced on a template change, shrunk,
scheduled, removed; counted against capacity; pool time kept apart from the learner's."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from labxblock import labs
from labxblock.labs import pools, usage
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent, WarmPool
from tests.engine_harness import lab_spec, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def pool_rows(**filters: object):
    return Lab.objects.filter(learner__isnull=True, **filters)


def held(state: State) -> int:
    """Unassigned pool stacks in ``state``, wanted as they are (not on their way out)."""
    return pool_rows(state=state).exclude(desired=Desired.DELETED).count()


QUICK = {"create": 0.3, "suspend": 0.2, "resume": 0.3, "delete": 0.2}


@pytest.fixture
def pooled(engine_factory, cloud_fake):
    """``pooled(size, **pool settings)``: a quick cloud, the engine, and a pool of ``size`` at rest."""
    def start(size: int, **settings: object):
        cloud_fake.configure(delays=QUICK)
        engine = engine_factory()
        spec = lab_spec(engine.lab_port.port)
        taught_pool(engine, spec, size, **settings)
        resting = State.READY if settings.get("keep") == "running" else State.SUSPENDED
        wait_for(f"{size} pool stacks {resting}", lambda: held(resting) == size, 30,
                 explain=lambda: list(pool_rows().values_list("state", "desired")))
        return engine, spec

    return start


def taught_pool(engine, spec, size: int, **settings: object) -> WarmPool:
    """A pool of ``size`` for ``spec``'s lab, its template learned from a staff member's launch."""
    pool = pools.configure(course_run=spec.course_run, lab_key=spec.lab_key, size=size, **settings)
    assert pools.target(pool, timezone.now()) == 0  # no template yet: nothing is built blind
    labs.request_launch(engine.user("staff"), spec, actor="staff")
    pool.refresh_from_db()
    assert pool.blueprint is not None
    return pool


def test_a_pool_fills_suspended_a_claim_is_ready_in_the_resume_time_and_the_pool_refills(
        engine_factory, cloud_fake):
    cloud_fake.configure(delays={"create": 0.5, "suspend": 0.3, "resume": 1.5, "delete": 0.2})
    engine = engine_factory()
    spec = lab_spec(engine.lab_port.port)
    taught_pool(engine, spec, 3)
    wait_for("three suspended pool stacks", lambda: held(State.SUSPENDED) == 3, 30,
             explain=lambda: list(pool_rows().values_list("state", "desired")))
    stack = pool_rows(state=State.SUSPENDED).first()
    assert stack.private_key and stack.password  # stored as any lab's: encrypted apart...
    assert "private_key" not in stack.outputs and "password" not in stack.outputs  # ...not in plain ones
    assert stack.ip == "127.0.0.1" and stack.outputs.get("host_key")  # probed before it went to rest

    learner = engine.user("ada")
    resting = set(pool_rows(state=State.SUSPENDED).values_list("stack_name", flat=True))
    status = labs.request_launch(learner, spec, actor="learner")
    lab = Lab.objects.get(pk=status.lab_id)
    assert lab.learner == learner and lab.pool is None and lab.stack_name in resting
    wait_for("the claimed lab ready", lambda: Lab.objects.filter(pk=lab.pk, state=State.READY).exists(), 15)
    lab.refresh_from_db()
    assert lab.launch_seconds < 1.5 + 3  # the cloud's resume time and a tick or two, not a create
    assert labs.terminal_access(learner, spec.course_run, spec.lab_key).password == stack.password
    claimed = LabEvent.objects.filter(lab=lab, reason=pools.CLAIMED)
    assert claimed.count() == 1 and claimed.get().learner == learner and not claimed.get().pool
    # The pool refills; the learner's lab is theirs, never counted in the pool again.
    wait_for("the pool refilled", lambda: held(State.SUSPENDED) == 3, 30)
    assert Lab.objects.filter(learner=learner).count() == 1
    assert engine.cloud.counters()["stack_create"] == 1 + 3 + 1  # staff's own, the pool, the refill


def test_pool_time_is_not_the_learners(pooled):
    engine, spec = pooled(1, keep="running")  # a running pool stack costs until it is claimed
    stack = pool_rows(state=State.READY).get()
    learner = engine.user("grace")
    labs.request_launch(learner, spec, actor="learner")
    claimed_at = LabEvent.objects.get(stack_name=stack.stack_name, reason=pools.CLAIMED).at
    until = timezone.now() + timedelta(seconds=1)

    rows = usage.report(since=claimed_at - timedelta(days=1), until=until)
    mine = [r for r in rows if r.learner_id == learner.pk]
    pool_time = [r for r in rows if r.pool]
    assert len(mine) == 1 and len(pool_time) == 1
    before = pool_time[0].up_seconds
    assert mine[0].up_seconds <= (until - claimed_at).total_seconds() + 0.01  # from the claim only
    assert before >= (claimed_at - stack.created_at).total_seconds() - 1  # built and waiting: pool time
    # The staff panel's up-time of the learner's lab counts from the claim too.
    (theirs,) = usage.up_seconds_of([stack], since=claimed_at - timedelta(days=1), until=until).values()
    assert theirs == pytest.approx(mine[0].up_seconds)
    from labxblock import reports

    records = reports.usage_records(rows, usage.site_prices(), "USD")
    assert {r["learner"] for r in records} >= {reports.WARM_POOL, "grace"}


def test_a_claim_spends_the_learners_budget_from_the_claim_and_a_claim_ahead_from_their_arrival(pooled):
    """A pool stack's up-time is the pool's: nobody's budget. The learner's counts from the claim, with
    what their earlier stack of the lab used; one made by a hidden block counts from their arrival; a
    learner whose lab time is used up gets no stack."""
    engine, spec = pooled(2, keep="running")  # up (and counted in usage) while nobody has them
    waiting = {lab.stack_name: lab.up_since for lab in pool_rows(state=State.READY)}
    assert all(waiting.values())
    spec = replace(spec, block_id="unit-2", time_budget_seconds=3600)

    ada = engine.user("ada")
    status = labs.request_launch(ada, spec, actor="learner")
    lab = Lab.objects.get(pk=status.lab_id)
    claimed_at = LabEvent.objects.get(lab=lab, reason=pools.CLAIMED).at
    assert lab.stack_name in waiting and waiting[lab.stack_name] < claimed_at  # up before ada came
    assert (lab.used_seconds, lab.up_since) == (0.0, claimed_at)
    assert lab.budget_ends_at == claimed_at + timedelta(hours=1)
    assert status.budget.used_seconds < 2  # the pool's build and wait are not hers

    bob = engine.user("bob")  # a hidden block in the unit before claims for him
    ahead = labs.launch_ahead(bob, replace(spec, block_id="unit-1"), actor="learner")
    his = Lab.objects.get(pk=ahead.lab_id)
    assert his.stack_name in waiting and his.awaiting_learner
    assert (his.used_seconds, his.up_since, his.budget_ends_at) == (0.0, None, None)
    before = timezone.now()
    labs.request_launch(bob, spec, actor="learner")  # he reaches the unit that shows it
    his.refresh_from_db()
    assert not his.awaiting_learner and before <= his.up_since <= timezone.now()

    # Carol's lab of this key was deleted with all of its hour used: the pool gives her nothing.
    carol = engine.user("carol")
    spent = Lab.objects.create(learner=carol, course_run=spec.course_run, lab_key=spec.lab_key,
                               state=State.DELETED, desired=Desired.DELETED, used_seconds=3600,
                               budget_limits={"unit-2": 3600})
    refused = labs.request_launch(carol, spec, actor="learner")
    assert refused.used_up and refused.lab_id == spent.pk
    assert Lab.objects.get(learner=carol).stack_name == spent.stack_name
    assert not LabEvent.objects.filter(learner=carol, reason=pools.CLAIMED).exists()
    # Dave's had used half of it, and been granted ten minutes: the pool's stack carries both.
    dave = engine.user("dave")
    Lab.objects.create(learner=dave, course_run=spec.course_run, lab_key=spec.lab_key, state=State.DELETED,
                       desired=Desired.DELETED, used_seconds=1800, budget_limits={"unit-2": 3600},
                       budget_granted_seconds=600)
    wait_for("a pool stack to claim", lambda: held(State.READY) >= 1, 30)
    lab = Lab.objects.get(pk=labs.request_launch(dave, spec, actor="learner").lab_id)
    claimed_at = LabEvent.objects.get(lab=lab, reason=pools.CLAIMED).at
    assert (lab.used_seconds, lab.budget_granted_seconds, lab.up_since) == (1800, 600, claimed_at)
    assert lab.budget_ends_at == claimed_at + timedelta(seconds=3600 + 600 - 1800)


def test_a_template_change_is_never_handed_out_and_the_old_stacks_are_replaced(pooled):
    engine, spec = pooled(2)
    old = set(pool_rows().values_list("stack_name", flat=True))

    template = spec.providers[0].template.replace("public_ip:", "note:\n    value: v2\n  public_ip:")
    changed = replace(spec, providers=(replace(spec.providers[0], template=template),))
    learner = engine.user("hopper")
    status = labs.request_launch(learner, changed, actor="learner")
    mine = Lab.objects.get(pk=status.lab_id)
    assert mine.stack_name not in old and mine.state in (State.REQUESTED, State.CREATING)  # a fresh create
    wait_for("the old pool stacks gone, new ones at rest",
             lambda: not Lab.objects.filter(stack_name__in=old).exists() and held(State.SUSPENDED) == 2, 40,
             explain=lambda: list(pool_rows().values_list("stack_name", "state", "desired")))
    assert not (set(pool_rows().values_list("stack_name", flat=True)) & old)
    assert not (engine.stacks() & old)  # deleted in the cloud, and the rows forgotten
    reasons = set(LabEvent.objects.filter(stack_name__in=old).values_list("reason", flat=True))
    assert "the lab's template changed" in reasons


def test_shrinking_a_schedule_ending_and_removing_a_pool_delete_its_stacks(pooled):
    engine, spec = pooled(3)

    pools.configure(course_run=spec.course_run, lab_key=spec.lab_key, size=1)
    wait_for("one left", lambda: pool_rows().count() == 1 and held(State.SUSPENDED) == 1, 30)

    # A schedule that is off now (a window on another day of the week): the pool is emptied.
    other_day = (timezone.now().weekday() + 3) % 7
    closed = f"{('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')[other_day]} 00:00-24:00"
    pool = pools.configure(course_run=spec.course_run, lab_key=spec.lab_key, schedule=closed)
    assert pools.target(pool, timezone.now()) == 0
    wait_for("emptied outside its schedule", lambda: not pool_rows().exists(), 30)
    pools.configure(course_run=spec.course_run, lab_key=spec.lab_key, schedule="", size=2)
    wait_for("two again", lambda: held(State.SUSPENDED) == 2, 30)

    assert pools.remove(spec.course_run, spec.lab_key) == 2
    wait_for("no pool stack left", lambda: not pool_rows().exists(), 30)
    staff = Lab.objects.get(learner__username="staff")
    assert engine.stacks() == {staff.stack_name}  # the staff member's own lab is nobody's pool


def test_pool_stacks_count_against_capacity_and_learners_are_placed_first(engine_factory, cloud_fake):
    cloud_fake.configure(delays=QUICK)
    providers = {"default": {"type": "openstack", "capacity": 2, **cloud_fake.provider_config}}
    engine = engine_factory(providers=providers)
    spec = lab_spec(engine.lab_port.port)
    taught_pool(engine, spec, 3)  # more than the provider holds beside the staff member's lab
    wait_for("one pool stack at rest", lambda: held(State.SUSPENDED) == 1, 30)
    assert pool_rows(state=State.REQUESTED, provider="").count() == 2  # queued for capacity
    # A learner with a pool stack to claim takes it: no new slot needed.
    first = labs.request_launch(engine.user("ada"), spec, actor="learner")
    assert Lab.objects.get(pk=first.lab_id).provider == "default"
    wait_for("ada's lab ready", lambda: Lab.objects.filter(pk=first.lab_id, state=State.READY).exists(), 15)
    # The next learner finds none at rest and queues behind the pool's older rows; a slot frees up,
    # and the learner gets it, not the pool.
    second = labs.request_launch(engine.user("bob"), spec, actor="learner")
    assert Lab.objects.get(pk=second.lab_id).provider == ""
    from labxblock.labs import operator

    operator.act("delete", Lab.objects.filter(learner__username="staff").values_list("pk", flat=True),
                 actor="operator:test")
    wait_for("bob's lab ready", lambda: Lab.objects.filter(pk=second.lab_id, state=State.READY).exists(), 30)
    assert Lab.objects.filter(provider="default").exclude(state=State.DELETED).count() == 2
    assert not pool_rows(provider="default").exclude(state=State.DELETED).exists()


def test_a_schedule_that_cannot_be_read_is_refused_with_its_reason(db):
    with pytest.raises(pools.PoolError, match="expected a window such as"):
        pools.configure(course_run="course-v1:O+C+R", lab_key="lab", size=2, schedule="weekdays")
    with pytest.raises(pools.PoolError, match="IANA time zone"):
        pools.configure(course_run="course-v1:O+C+R", lab_key="lab", size=2, time_zone="Mars/Olympus")
    assert not WarmPool.objects.exists()


def test_target_follows_the_schedule_in_its_time_zone(db):
    pool = WarmPool(course_run="r", lab_key="k", size=4, schedule="mon-fri 08:00-18:00",
                    time_zone="Europe/Berlin", blueprint_id=None)
    monday_9_berlin = datetime.fromisoformat("2026-03-02T08:00:00+00:00")  # 09:00 in Berlin (CET)
    assert pools.target(pool, monday_9_berlin) == 0  # no template known yet
    from labxblock.models import Blueprint

    pool.blueprint = Blueprint.objects.create(digest="d" * 64, spec={})
    assert pools.target(pool, monday_9_berlin) == 4
    assert pools.target(pool, monday_9_berlin + timedelta(hours=9, minutes=30)) == 0  # 18:30 there
    assert pools.target(pool, monday_9_berlin + timedelta(days=5)) == 0  # Saturday


def test_a_pool_whose_time_zone_this_host_lacks_leaves_the_other_pools_and_the_tick_at_work(db, caplog):
    """Stored on a host that knew the zone, tended on one that does not: logged, and the rest goes on."""
    from labxblock.models import Blueprint

    blueprint = Blueprint.objects.create(digest="e" * 64, spec={})
    good = pools.configure(course_run="course-v1:O+Good+R", lab_key="lab", size=1)
    odd = pools.configure(course_run="course-v1:O+Odd+R", lab_key="lab", size=1)
    WarmPool.objects.filter(pk__in=[good.pk, odd.pk]).update(blueprint=blueprint)
    WarmPool.objects.filter(pk=odd.pk).update(time_zone="Mars/Olympus")  # past save()'s check
    with caplog.at_level("ERROR", logger="labxblock.labs.pools"):
        pools.tend(timezone.now())
    assert pool_rows(pool=good).count() == 1  # the good pool got its stack all the same
    assert not pool_rows(pool=odd).exists()
    assert f"warm pool {odd.pk} not tended" in caplog.text and "Mars/Olympus" in caplog.text


def test_two_overlapping_ticks_fill_a_pool_once(db):
    """A slow tick and the next both read the pool short before either added a stack."""
    from labxblock.models import Blueprint

    pool = pools.configure(course_run="course-v1:O+Overlap+R", lab_key="lab", size=3)
    WarmPool.objects.filter(pk=pool.pk).update(blueprint=Blueprint.objects.create(digest="f" * 64, spec={}))
    pool.refresh_from_db()
    now = timezone.now()
    snapshot: list[Lab] = []  # what each tick read: no stacks yet
    for _ in range(2):
        pools._tend_pool(pool, snapshot, now, pools.Tended())
    assert pool_rows(pool=pool).count() == 3
    assert LabEvent.objects.filter(reason="warm pool: stack added").count() == 3
