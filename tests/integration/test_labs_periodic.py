"""Keepalive, the idle and reaping sweeps, orphans, usage, and how the ticks are scheduled."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labxblock import conf, labs, tasks
from labxblock.labs import periodic, usage
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from labxblock.schedule import beat_schedule, install_ticks

pytestmark = [pytest.mark.django_db, pytest.mark.mariadb]


def make_lab(name: str, **fields) -> Lab:
    user = get_user_model().objects.create_user(username=name)
    fields.setdefault("state", State.READY)
    return Lab.objects.create(
        learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default", **fields
    )


def test_keepalive_is_one_indexed_update_that_moves_idle_and_delete_times():
    lab = make_lab("keen", idle_at=timezone.now(), delete_by=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert labs.keepalive(
            lab.learner, lab.course_run, lab.lab_key, suspend_timeout=600, delete_timeout=3600
        )
    assert len(queries) == 1 and queries[0]["sql"].upper().startswith("UPDATE")
    lab.refresh_from_db()
    assert timedelta(seconds=590) < lab.idle_at - timezone.now() <= timedelta(seconds=600)
    assert timedelta(seconds=3590) < lab.delete_by - timezone.now() <= timedelta(seconds=3600)
    assert not labs.keepalive(lab.learner, lab.course_run, "another-lab")


def test_keepalive_for_a_paused_lab_says_so_and_the_status_counts_from_the_wake_up_request():
    lab = make_lab("returner", state=State.SUSPENDED, desired=Desired.SUSPENDED)
    Lab.objects.filter(pk=lab.pk).update(state_changed_at=timezone.now() - timedelta(hours=2))
    assert not labs.keepalive(lab.learner, lab.course_run, lab.lab_key)  # the page relaunches on False
    woken = timezone.now()
    Lab.objects.filter(pk=lab.pk).update(desired=Desired.UP, launch_requested_at=woken)
    status = labs.get_status(lab.learner, lab.course_run, lab.lab_key)
    assert status.phase == "resuming"
    assert status.since == woken  # not two hours ago, when it was suspended


def test_suspend_idle_marks_only_silent_labs_and_says_why():
    now = timezone.now()
    silent = make_lab("silent", idle_at=now - timedelta(seconds=1))
    active = make_lab("active", idle_at=now + timedelta(seconds=60))
    assert periodic.mark_idle(now) == 1
    assert Lab.objects.get(pk=silent.pk).desired == Desired.SUSPENDED
    assert Lab.objects.get(pk=active.pk).desired == Desired.UP
    event = LabEvent.objects.get(lab=silent)
    assert (event.reason, event.actor, event.desired) == ("idle", "suspend-idle", Desired.SUSPENDED)
    assert periodic.mark_idle(now) == 0  # a second tick changes nothing


def with_lab_settings(settings, **overrides):
    labxblock = {**settings.XBLOCK_SETTINGS["labxblock"], **overrides}
    return override_settings(XBLOCK_SETTINGS={"labxblock": labxblock})


@pytest.mark.parametrize("grace", [30, 5])
def test_leave_brings_the_idle_moment_to_the_sites_grace_in_one_update(settings, grace):
    lab = make_lab("leaver", idle_at=timezone.now() + timedelta(seconds=600))
    with with_lab_settings(settings, leave_grace_seconds=grace), \
            CaptureQueriesContext(connection) as queries:
        assert labs.leave(lab.learner, lab.course_run, lab.lab_key)
    assert len(queries) == 1 and queries[0]["sql"].upper().startswith("UPDATE")
    lab.refresh_from_db()
    assert timedelta(seconds=grace - 5) < lab.idle_at - timezone.now() <= timedelta(seconds=grace)
    assert lab.desired == Desired.UP  # marked at the next reconcile pass, once the grace is over


def test_leave_never_postpones_a_sooner_suspension_and_a_keepalive_cancels_it():
    now = timezone.now()
    soon = make_lab("short-timeout", idle_at=now + timedelta(seconds=5))
    assert not labs.leave(soon.learner, soon.course_run, soon.lab_key)  # 5 s < the 30 s grace
    assert Lab.objects.get(pk=soon.pk).idle_at == soon.idle_at
    paused = make_lab("paused", state=State.SUSPENDED, desired=Desired.SUSPENDED,
                      idle_at=now + timedelta(seconds=600))
    assert not labs.leave(paused.learner, paused.course_run, paused.lab_key)

    lab = make_lab("back-again", idle_at=now + timedelta(seconds=600))
    assert labs.leave(lab.learner, lab.course_run, lab.lab_key)
    assert labs.keepalive(lab.learner, lab.course_run, lab.lab_key, suspend_timeout=600)  # another tab
    periodic.mark_idle(timezone.now() + timedelta(seconds=31))  # the grace went by
    assert Lab.objects.get(pk=lab.pk).desired == Desired.UP  # kept up by the keepalive
    assert Lab.objects.get(pk=soon.pk).desired == Desired.SUSPENDED  # its own 5 s timeout, as before


def test_the_reconcile_tick_marks_a_lab_left_past_its_grace(settings):
    lab = make_lab("gone-home", idle_at=timezone.now() + timedelta(seconds=600))
    with with_lab_settings(settings, leave_grace_seconds=1):
        labs.leave(lab.learner, lab.course_run, lab.lab_key)
        tasks.reconcile.run()
        assert Lab.objects.get(pk=lab.pk).desired == Desired.UP  # within the grace
        Lab.objects.filter(pk=lab.pk).update(idle_at=timezone.now() - timedelta(seconds=1))
        tasks.reconcile.run()
    assert Lab.objects.get(pk=lab.pk).desired == Desired.SUSPENDED
    assert LabEvent.objects.filter(lab=lab, reason="idle", desired=Desired.SUSPENDED).count() == 1


def test_reaper_expires_unused_labs_only():
    now = timezone.now()
    unused = make_lab("unused", delete_by=now - timedelta(seconds=1))
    used = make_lab("used", delete_by=now - timedelta(seconds=1))
    labs.keepalive(used.learner, used.course_run, used.lab_key)  # use moves delete_by forward
    assert periodic.mark_expired(now) == 1
    assert Lab.objects.get(pk=unused.pk).desired == Desired.DELETED
    assert Lab.objects.get(pk=used.pk).desired == Desired.UP


def test_orphans_are_ours_unowned_and_older_than_the_grace_period():
    now = timezone.now()
    owned = make_lab("owner")
    gone = make_lab("gone", state=State.DELETED)
    old, young = now - timedelta(hours=2), now - timedelta(seconds=10)
    listed = [
        periodic.ListedStack(owned.stack_name, old),  # a live row owns it
        periodic.ListedStack(gone.stack_name, old),  # its row believes it deleted: an orphan
        periodic.ListedStack("lab-test-stray", old),
        periodic.ListedStack("lab-test-just-born", young),  # within the grace period
        periodic.ListedStack("lab-test-ageless", None),  # age unknown: never taken for an orphan
    ]
    assert periodic.orphans("default", listed, now) == sorted([gone.stack_name, "lab-test-stray"])


def test_usage_counts_the_time_a_lab_was_up_from_its_events():
    lab = make_lab("user-of-time")
    t0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    for minutes, to_state in [
        (0, State.CREATING),
        (5, State.STARTING),
        (6, State.READY),
        (66, State.SUSPENDING),
        (67, State.SUSPENDED),
        (600, State.RESUMING),
        (602, State.STARTING),
        (603, State.READY),
    ]:
        LabEvent.record(
            lab, actor="test", from_state="", to_state=to_state, at=t0 + timedelta(minutes=minutes)
        )
    totals = usage.lab_usage(since=t0, until=t0 + timedelta(minutes=633))
    key = (lab.learner_id, lab.course_run, lab.lab_key)
    # Up from 0 to 67 (creating through suspending) and from 600 to 633.
    assert totals == {key: timedelta(minutes=67 + 33)}
    assert usage.lab_usage(since=t0 + timedelta(minutes=620), until=t0 + timedelta(minutes=630)) == {
        key: timedelta(minutes=10)
    }


class RunningBeat:
    """What ``beat_init`` hands its receivers: the service, whose scheduler exists already."""

    def __init__(self) -> None:
        from celery.beat import Scheduler

        from tests.celery_app import app

        self.scheduler = Scheduler(app, lazy=True)
        self.scheduler.update_from_dict({"host-task": {"task": "host.tasks.x", "schedule": 60}})


def test_beat_gets_the_ticks_from_the_settings_on_their_queue_when_it_starts(settings):
    xblock = {"labxblock": {**settings.XBLOCK_SETTINGS["labxblock"], "reconcile_interval_seconds": 3,
                            "queues": {"ticks": "site-ticks"}}}
    beat = RunningBeat()
    with override_settings(XBLOCK_SETTINGS=xblock):
        install_ticks(sender=beat)
    schedule = beat.scheduler.schedule
    assert schedule["host-task"].task == "host.tasks.x"  # the host's own entries are kept
    reconcile = schedule["labxblock-reconcile"]
    assert reconcile.task == "labxblock.tasks.reconcile"
    assert reconcile.schedule.run_every == timedelta(seconds=3)
    # On the ticks queue, whatever the host's router says; a late tick is dropped, not piled up.
    assert reconcile.options == {"queue": "site-ticks", "expires": 3}
    assert schedule["labxblock-reap"].schedule.run_every == timedelta(seconds=300)  # the default
    assert set(beat_schedule(conf.get_settings())) <= set(schedule)


def test_beat_with_bad_settings_keeps_running_its_own_entries_and_says_why(caplog):
    beat = RunningBeat()
    with override_settings(XBLOCK_SETTINGS={"labxblock": {"install_id": "BAD"}}):
        install_ticks(sender=beat)
    assert list(beat.scheduler.schedule) == ["host-task"]
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "scheduling the ticks in beat" in record.getMessage()
    assert "labxblock.install_id: expected" in record.getMessage()


@pytest.mark.parametrize("tick", [tasks.reconcile, tasks.suspend_idle, tasks.reap])
def test_a_tick_on_a_site_without_settings_logs_the_key_and_returns(tick, caplog):
    make_lab("idle", idle_at=timezone.now() - timedelta(seconds=5), delete_by=timezone.now())
    with override_settings(XBLOCK_SETTINGS={}):
        assert tick.run() == 0  # returns: the worker and beat carry on
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert 'XBLOCK_SETTINGS["labxblock"]: expected a mapping' in record.getMessage()
    assert Lab.objects.get().desired == Desired.UP  # nothing was done half-configured


@pytest.mark.parametrize(("task", "args"), [
    (tasks.perform_job, (1, "create", "requested")), (tasks.advance_lab, (1,)), (tasks.run_checks, (1,)),
    (tasks.delete_orphan, ("default", "lab-test-stray", {})), (tasks.observe_provider, ("default",)),
    (tasks.audit, ("default",)),
])
def test_a_task_on_a_site_with_bad_settings_logs_the_key_and_returns(task, args, caplog):
    with override_settings(XBLOCK_SETTINGS={"labxblock": {"install_id": "test", "providers": "none"}}):
        assert task.run(*args) == tasks.NOT_CONFIGURED  # acknowledged: the engine decides again later
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "labxblock.providers: expected a mapping, got 'none'" in record.getMessage()


def test_cron_sites_run_a_tick_with_the_management_command():
    lab = make_lab("cron", idle_at=timezone.now() - timedelta(seconds=5))
    out = io.StringIO()
    call_command("labxblock_tick", "suspend-idle", stdout=out)
    assert "1 lab(s)" in out.getvalue()
    assert Lab.objects.get(pk=lab.pk).desired == Desired.SUSPENDED


def test_the_call_budget_keeps_to_the_providers_rate_in_any_minute_whatever_the_tick():
    from labxblock.labs.engine import call_budget

    lab = make_lab("budget")
    t0 = timezone.now()

    def calls(at: datetime, count: int, to_state: str = "suspending", reason: str = "desired") -> None:
        LabEvent.objects.bulk_create([LabEvent.build(lab, actor="reconciler", reason=reason,
                                                     from_state="ready", to_state=to_state, at=at)
                                      for _ in range(count)])

    assert call_budget("default", 30, t0) == 30  # at rest: the whole minute's worth at once
    calls(t0, 25)
    calls(t0 + timedelta(seconds=10), 3, to_state="resuming")  # a learner's resume counts: the cloud's rate
    calls(t0 + timedelta(seconds=10), 4, to_state="deleting", reason="adopted")  # no call: the cloud did it
    calls(t0 + timedelta(seconds=10), 4, to_state="ready")  # no rate-limited call either
    assert call_budget("default", 30, t0 + timedelta(seconds=30)) == 2
    assert call_budget("other", 30, t0 + timedelta(seconds=30)) == 30  # each provider its own rate
    assert call_budget("default", 30, t0 + timedelta(seconds=61)) == 27  # the first 25 left the minute
    assert call_budget("default", 30, t0 + timedelta(seconds=71)) == 30


def test_a_job_for_a_provider_no_longer_configured_is_recorded_not_crashed():
    from labxblock.labs.engine import Job
    from labxblock.lifecycle import Action
    from labxblock.tasks import carry_out

    lab = make_lab("orphaned", state=State.SUSPENDING, desired=Desired.SUSPENDED)
    Lab.objects.filter(pk=lab.pk).update(provider="removed-cloud")
    assert carry_out(Job(lab.pk, Action.SUSPEND, State.SUSPENDING)) == "no such provider"
    lab.refresh_from_db()
    assert "removed-cloud" in lab.status_reason and lab.deadline_at is not None  # due: counted next pass
