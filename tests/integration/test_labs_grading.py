"""labs.grading against the real edx-submissions app: the scores the LMS's grades app reads first.

edx-platform's grades app turns edx-submissions' ``score_set`` signal into a grade
recalculation (``submissions_score_set_handler``) and ``score_reset`` into a deleted score;
these tests listen for both in-process and read the scores back through the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from submissions import api
from submissions.models import Score, score_reset, score_set

from labxblock import compat, gradebook
from labxblock.labs import grading
from labxblock.models import CheckRun

pytestmark = pytest.mark.django_db
RUN = "course-v1:Org+Lab+2026"
USAGE = "block-v1:Org+Lab+2026+type@labxblock+block@lab1"


@pytest.fixture
def learner():
    return get_user_model().objects.create(username=f"{compat.WORKBENCH_USER_PREFIX}ada")


@pytest.fixture
def signals() -> Iterator[list[tuple[str, dict]]]:
    sent: list[tuple[str, dict]] = []

    def on_set(sender, **kwargs) -> None:
        sent.append(("set", kwargs))

    def on_reset(sender, **kwargs) -> None:
        sent.append(("reset", kwargs))

    score_set.connect(on_set, weak=False)
    score_reset.connect(on_reset, weak=False)
    yield sent
    score_set.disconnect(on_set)
    score_reset.disconnect(on_reset)


def item() -> dict[str, str]:
    return {"student_id": "ada", "course_id": RUN, "item_id": USAGE, "item_type": "labxblock"}


@pytest.mark.parametrize(("score", "weight", "points"), [
    (0.4, 10, (4, 10)),
    (1.0, 1, (1, 1)),
    (0.0, 3, (0, 3)),
    (0.6, 5.0, (3, 5)),
    (2 / 3, 3, (2, 3)),  # 0.666... times 3 is 2 within float error
    (1.0, None, (1, 1)),  # no weight: the platform counts the raw score, out of 1
    (2 / 3, 1, None),  # a fraction of a point
    (0.5, 2.5, None),  # a weight that is not whole points
    (1.0, 0, None),  # worth nothing: the submissions API needs points possible > 0
])
def test_whole_points(score, weight, points) -> None:
    assert grading.whole_points(score, weight) == points


@pytest.mark.mariadb  # edx-submissions' tables migrate on MariaDB too
def test_a_score_is_set_for_the_learners_student_item_and_score_set_is_sent(learner, signals) -> None:
    assert grading.student_item(learner, RUN, USAGE) == item()
    assert grading.record(learner, RUN, USAGE, 0.4, 10, run_id=7) == grading.SET
    score = api.get_score(item())
    assert (score["points_earned"], score["points_possible"]) == (4, 10)
    assert [(kind, {k: v for k, v in kwargs.items() if k not in ("signal", "created_at")})
            for kind, kwargs in signals] == [
        ("set", {"points_possible": 10, "points_earned": 4, "anonymous_user_id": "ada",
                 "course_id": RUN, "item_id": USAGE}),
    ]
    assert signals[0][1]["created_at"] == score["created_at"]


def test_the_same_run_is_recorded_once(learner, signals) -> None:
    assert grading.record(learner, RUN, USAGE, 0.4, 10, run_id=7) == grading.SET
    assert grading.record(learner, RUN, USAGE, 0.4, 10, run_id=7) == grading.UNCHANGED
    assert Score.objects.count() == 1 and len(signals) == 1
    # Another run with the same score is a new submission (the learner checked again).
    assert grading.record(learner, RUN, USAGE, 0.4, 10, run_id=8) == grading.SET
    assert Score.objects.count() == 2


def test_a_fraction_of_a_point_hides_the_older_score_so_the_courseware_score_counts(learner, signals) -> None:
    grading.record(learner, RUN, USAGE, 1.0, 1, run_id=1)
    assert grading.record(learner, RUN, USAGE, 2 / 3, 1, run_id=2) == grading.HIDDEN
    assert api.get_score(item()) is None
    assert [kind for kind, _ in signals] == ["set", "reset"]
    assert grading.record(learner, RUN, USAGE, 1 / 3, 1, run_id=3) == grading.NOT_WHOLE  # nothing to hide


def test_only_if_higher_keeps_a_higher_score(learner) -> None:
    grading.record(learner, RUN, USAGE, 0.8, 10, run_id=1)
    assert grading.record(learner, RUN, USAGE, 0.5, 10, only_if_higher=True) == grading.KEPT
    assert grading.record(learner, RUN, USAGE, 0.9, 10, only_if_higher=True) == grading.SET
    assert api.get_score(item())["points_earned"] == 9


def test_without_edx_submissions_nothing_is_recorded(learner) -> None:
    with override_settings(INSTALLED_APPS=[a for a in settings_apps() if a != "submissions"]):
        assert gradebook.submissions_api() is None
        assert grading.record(learner, RUN, USAGE, 1.0, 1, run_id=1) == grading.UNAVAILABLE


def test_a_learner_without_an_anonymous_id_here_is_not_recorded() -> None:
    stranger = get_user_model().objects.create(username="someone")  # neither LMS nor workbench
    assert grading.record(stranger, RUN, USAGE, 1.0, 1, run_id=1) == grading.UNAVAILABLE
    assert Score.objects.count() == 0


def test_publish_run_takes_a_finished_runs_score_and_the_blocks_weight(learner) -> None:
    now = timezone.now()
    common = {"learner": learner, "course_run": RUN, "usage_id": USAGE, "lab_key": "k", "actor": "t",
              "started_at": now, "deadline_at": now + timedelta(minutes=1)}
    failed = CheckRun.objects.create(state=CheckRun.State.FAILED, reason="unreachable", **common)
    done = CheckRun.objects.create(state=CheckRun.State.DONE, score=0.5, weight=4, **common)
    assert grading.publish_run(failed.pk) == grading.NOT_SCORED
    assert grading.publish_run(done.pk) == grading.SET
    assert api.get_score(item())["points_earned"] == 2
    assert grading.publish_run(done.pk) == grading.UNCHANGED
    by_staff = CheckRun.objects.create(state=CheckRun.State.DONE, score=1.0, weight=4,
                                       **{**common, "actor": "staff:3"})
    assert grading.publish_run(by_staff.pk) == grading.BY_STAFF  # staff viewing as the learner
    assert api.get_score(item())["points_earned"] == 2


def settings_apps() -> list[str]:
    from django.conf import settings

    return list(settings.INSTALLED_APPS)


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_the_worker_and_the_page_publishing_one_run_at_once_leave_one_score(learner) -> None:
    """The race seen in a real run: both create the learner's first student item at once."""
    import threading

    from django.db import connection

    runs = [CheckRun.objects.create(
        learner=learner, course_run=RUN, usage_id=f"{USAGE}{i}", lab_key="k", actor="learner:1",
        started_at=timezone.now(), deadline_at=timezone.now() + timedelta(minutes=1),
        state=CheckRun.State.DONE, score=0.5, weight=10) for i in range(8)]
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def publish(run: CheckRun, start: threading.Barrier) -> None:
        try:
            start.wait()
            outcomes.append(grading.record(learner, RUN, run.usage_id, 0.5, 10, run_id=run.pk))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    for run in runs:
        start = threading.Barrier(3)
        threads = [threading.Thread(target=publish, args=(run, start)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert sorted(set(outcomes)) == [grading.SET, grading.UNCHANGED]
    for run in runs:
        item = {"student_id": "ada", "course_id": RUN, "item_id": run.usage_id, "item_type": "labxblock"}
        assert api.get_score(item)["points_earned"] == 5
        assert Score.objects.filter(student_item__item_id=run.usage_id).count() == 1
