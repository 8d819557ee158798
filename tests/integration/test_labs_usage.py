"""Usage and cost from the event log: the arithmetic at the report's edges, resets, suspensions,
deletions (of a lab, of a learner), the groupings, the chart's series and the CSV."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from labxblock import reports
from labxblock.labs import usage
from labxblock.lifecycle import State
from labxblock.models import CheckRun, Lab, LabEvent
from tests.engine_harness import lab_settings

pytestmark = [pytest.mark.django_db, pytest.mark.mariadb]
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
RUN = "course-v1:O+Use+R"


def make_lab(name: str, provider: str = "default", lab_key: str = "k") -> Lab:
    user = get_user_model().objects.create_user(username=name)
    return Lab.objects.create(learner=user, course_run=RUN, lab_key=lab_key, provider=provider)


def story(lab: Lab, *moves: tuple[float, State]) -> None:
    """Transitions of ``lab`` at minutes after T0, each from the state before it."""
    before = ""
    for minutes, to_state in moves:
        LabEvent.record(lab, actor="test", from_state=before, to_state=to_state,
                        at=T0 + timedelta(minutes=minutes))
        before = to_state


def hours(row: usage.UsageRow) -> float:
    return round(row.up_seconds / 3600, 4)


def only(rows: list[usage.UsageRow]) -> usage.UsageRow:
    (row,) = rows
    return row


def test_a_lab_up_across_both_edges_counts_only_inside_the_period() -> None:
    story(make_lab("edges"), (0, State.CREATING), (10, State.READY))
    row = only(usage.report(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)))
    assert hours(row) == 2.0
    assert row.launches == 0  # launched before the period: not counted in it


def test_suspended_time_is_not_counted_and_resumes_are() -> None:
    story(make_lab("sleeper"), (0, State.CREATING), (5, State.READY), (60, State.SUSPENDING),
          (61, State.SUSPENDED), (600, State.RESUMING), (602, State.STARTING), (603, State.READY),
          (663, State.SUSPENDING), (664, State.SUSPENDED))
    row = only(usage.report(since=T0, until=T0 + timedelta(days=1)))
    assert row.up_seconds == (61 + 64) * 60
    assert (row.launches, row.resumes, row.failures) == (1, 1, 0)


def test_a_reset_stops_the_clock_while_deleting_and_counts_a_second_launch() -> None:
    story(make_lab("resetter"), (0, State.CREATING), (5, State.READY), (30, State.DELETING),
          (35, State.DELETED), (35, State.REQUESTED), (36, State.CREATING), (40, State.READY))
    row = only(usage.report(since=T0, until=T0 + timedelta(minutes=100)))
    assert row.up_seconds == (30 + 64) * 60
    assert row.launches == 2


def test_a_lab_deleted_mid_period_stops_counting_and_failures_are_counted() -> None:
    story(make_lab("goner"), (0, State.CREATING), (2, State.FAILED), (3, State.REQUESTED),
          (4, State.CREATING), (10, State.READY), (70, State.DELETING), (75, State.DELETED))
    row = only(usage.report(since=T0, until=T0 + timedelta(days=30)))
    assert row.up_seconds == (2 + 66) * 60
    assert (row.launches, row.failures) == (2, 1)


def test_a_deleted_learner_keeps_the_course_runs_usage_and_the_lab_stops_at_the_deletion() -> None:
    lab = make_lab("leaver")
    story(lab, (0, State.CREATING), (5, State.READY))
    deleted_at = timezone.now()
    lab.learner.delete()
    later = deleted_at + timedelta(days=3)
    row = only(usage.report(since=T0, until=later))
    assert row.learner_id is None and row.username == ""
    # Up from T0 until the row went with its learner, not until the end of the report.
    assert abs(row.up_seconds - (deleted_at - T0).total_seconds()) < 5
    (record,) = reports.usage_records([row], {}, "EUR")
    assert record["learner"] == reports.DELETED_LEARNER


def test_check_runs_are_counted_per_learner_and_lab_in_the_period() -> None:
    lab = make_lab("checker")
    story(lab, (0, State.CREATING), (5, State.READY))
    for minutes in (10, 20, 60 * 30):
        CheckRun.objects.create(lab=lab, learner=lab.learner, course_run=RUN, usage_id="u", lab_key="k",
                                actor="t", started_at=T0 + timedelta(minutes=minutes),
                                deadline_at=T0 + timedelta(minutes=minutes + 5))
    row = only(usage.report(since=T0, until=T0 + timedelta(hours=1)))
    assert row.check_runs == 2


def test_groupings_add_up_and_cost_follows_each_providers_price() -> None:
    a, b = make_lab("ann", provider="default"), make_lab("ben", provider="os2")
    c = make_lab("cid", provider="default", lab_key="other")
    for lab in (a, b, c):
        story(lab, (0, State.CREATING), (60, State.SUSPENDING), (61, State.SUSPENDED))
    prices = {"default": Decimal("0.50"), "os2": Decimal("1.20")}
    since, until = T0, T0 + timedelta(hours=5)
    per_learner = usage.report(since=since, until=until)
    assert [r.username for r in per_learner] == ["ann", "ben", "cid"]
    assert [r.cost(prices) for r in per_learner] == [Decimal("0.51"), Decimal("1.22"), Decimal("0.51")]
    per_lab = usage.report(since=since, until=until, by="lab")
    assert [(r.lab_key, r.up_seconds, r.launches) for r in per_lab] == [("k", 2 * 61 * 60, 2),
                                                                       ("other", 61 * 60, 1)]
    (run,) = usage.report(since=since, until=until, by="course_run")
    assert run.cost(prices) == Decimal("2.24") and run.launches == 3
    assert run.cost({"default": Decimal("0.50")}) is None  # time on an unpriced provider: no cost shown


def test_the_series_shows_the_peak_of_labs_up_in_each_slice() -> None:
    story(make_lab("one"), (0, State.CREATING), (120, State.SUSPENDING), (121, State.SUSPENDED))
    story(make_lab("two"), (30, State.CREATING), (50, State.DELETING), (51, State.DELETED))
    series = usage.up_series(course_run=RUN, since=T0, until=T0 + timedelta(hours=4), buckets=4)
    assert series == [(T0, 2), (T0 + timedelta(hours=1), 1), (T0 + timedelta(hours=2), 1),
                      (T0 + timedelta(hours=3), 0)]


def test_usage_of_given_labs_is_one_query(django_assert_num_queries) -> None:
    a, b = make_lab("p"), make_lab("q")
    story(a, (0, State.CREATING), (30, State.SUSPENDED))
    with django_assert_num_queries(1):
        seconds = usage.up_seconds_of([a, b], since=T0, until=T0 + timedelta(hours=1))
    assert seconds == {a.pk: 1800.0, b.pk: 0.0}


def test_the_csv_has_a_header_the_price_and_the_sites_currency() -> None:
    story(make_lab("csv"), (0, State.CREATING), (90, State.SUSPENDED))
    providers = {"default": {"type": "openstack", "auth_url": "http://127.0.0.1:5000/v3", "username": "u",
                             "password": "p", "project_name": "p", "user_domain_name": "Default",
                             "project_domain_name": "Default", "price_per_hour": "0.40"}}
    with override_settings(XBLOCK_SETTINGS={"labxblock": lab_settings(providers, currency="EUR")}):
        rows = usage.report(since=T0, until=T0 + timedelta(hours=2))
        out = io.StringIO()
        reports.write(reports.usage_records(rows, usage.site_prices(), "EUR"), reports.USAGE_COLUMNS,
                      "csv", out)
    assert out.getvalue().splitlines() == [
        "course_run,lab_key,learner,up_hours,launches,resumes,failures,check_runs,cost,currency",
        f"{RUN},k,csv,1.5,1,0,0,0,0.60,EUR",
    ]
