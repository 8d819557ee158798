"""Check scores into the gradebook through edx-submissions: from the worker, with no page open.

edx-platform's grades app takes a block's score from the submissions API first, then
from the courseware record (CSM) that the block's runtime ``publish("grade")`` writes.
So whoever publishes a lab's grade keeps the submissions score equal to it: the worker
when a check run finishes (``publish_run``), the block when the page collects a run, an
instructor overrides it or a rescore publishes it (``record``). Without edx-submissions
(the plain workbench) nothing happens here and the page's publish is the only path.

The submissions API stores whole points (``points_earned`` / ``points_possible`` are
integers, read by the grades app as the block's *weighted* score). A score that is
not a whole number of points (weight 1, 2 of 3 checks) cannot be stored there
exactly: the stale submissions score is then hidden (``reset_score``) so the runtime's
exact CSM score counts, and that one arrives when the learner's page collects the run.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from labxblock import gradebook
from labxblock.labs import checking
from labxblock.labs.specs import is_test_lab
from labxblock.models import CheckRun

ITEM_TYPE = "labxblock"
WHOLE = 1e-6  # how close to an integer a number of points must be to count as whole

# What ``record`` did.
UNAVAILABLE = "unavailable"  # no submissions API, or no anonymous id for the learner here
SET = "set"  # a new submissions score
UNCHANGED = "unchanged"  # this run's score was already there (the worker and the page both publish)
KEPT = "kept"  # only_if_higher, and the score there was higher
HIDDEN = "hidden"  # not whole points: the submissions score was hidden so the CSM score counts
NOT_WHOLE = "not_whole"  # not whole points, and there was nothing to hide
NOT_SCORED = "not_scored"  # the run has no score (failed, lost, still running)
BY_STAFF = "by_staff"  # staff viewing as the learner started the run: it is not the learner's grade
FAILED = "failed"  # edx-submissions refused twice: logged; the page's runtime publish still counts
TEST_LAB = "test_lab"  # an author's run on a Studio test lab: never a grade

log = logging.getLogger(__name__)


def whole_points(score: float, weight: float | None) -> tuple[int, int] | None:
    """``score`` (0..1) of a block worth ``weight`` as whole (earned, possible) points, or None."""
    possible = 1.0 if weight is None else float(weight)
    earned = score * possible
    if possible <= 0 or abs(possible - round(possible)) > WHOLE or abs(earned - round(earned)) > WHOLE:
        return None
    return round(earned), round(possible)


def student_item(user: Any, course_run: str, usage_id: str) -> dict[str, str] | None:
    """The submissions API's key for the learner's score on a block; None without an anonymous id."""
    student_id = gradebook.anonymous_user_id(user, course_run)
    if not student_id:
        return None
    return {"student_id": student_id, "course_id": course_run, "item_id": usage_id, "item_type": ITEM_TYPE}


def record(user: Any, course_run: str, usage_id: str, score: float, weight: float | None, *,
           run_id: int | None = None, only_if_higher: bool = False) -> str:
    """Make the learner's submissions score ``score`` (0..1) times ``weight``; returns what was done.

    ``run_id`` names the check run the score comes from: recording the same run twice
    leaves one score (the worker and the page may both get there).
    """
    api = gradebook.submissions_api()
    item = student_item(user, course_run, usage_id) if api is not None else None
    if item is None:
        return UNAVAILABLE
    from submissions.errors import SubmissionError

    for attempt in (1, 2):
        try:
            with transaction.atomic():
                if run_id is not None:
                    # The worker and the learner's page may publish one run at the same moment: the
                    # run's row lock makes the second wait and find the first one's score (UNCHANGED).
                    CheckRun.objects.select_for_update().filter(pk=run_id).first()
                return _record(api, item, score, weight, run_id=run_id, only_if_higher=only_if_higher)
        except SubmissionError as exc:
            # Two first scores for one learner and block race to create its student item; the
            # second attempt finds it. Never fail the caller (a handler, a worker) over it.
            if attempt == 2:
                log.warning("labxblock: edx-submissions refused the score of %s for %s: %s",
                            usage_id, item["student_id"], exc)
    return FAILED


def _record(api: Any, item: dict[str, str], score: float, weight: float | None, *,
            run_id: int | None, only_if_higher: bool) -> str:
    course_run, usage_id = item["course_id"], item["item_id"]
    points = whole_points(score, weight)
    current = api.get_score(item)
    if points is None:
        if current is None:
            return NOT_WHOLE
        api.reset_score(item["student_id"], course_run, usage_id)
        return HIDDEN
    if current is not None:
        earned, possible = current["points_earned"], current["points_possible"]
        if only_if_higher and earned * points[1] >= points[0] * possible:
            return KEPT
        if run_id is not None and (earned, possible) == points and _latest_run(api, item) == run_id:
            return UNCHANGED
    submission = api.create_submission(item, {"check_run": run_id})
    api.set_score(submission["uuid"], *points)
    return SET


def _latest_run(api: Any, item: dict[str, str]) -> int | None:
    latest = api.get_submissions(item, limit=1)
    answer = latest[0]["answer"] if latest else None
    return answer.get("check_run") if isinstance(answer, dict) else None


def publish_run(run_id: int) -> str:
    """The worker's publish of a finished run: its score into the submissions API, once.

    A run that staff started while viewing as the learner, or an author on a Studio test lab, is
    never published.
    """
    run = CheckRun.objects.filter(pk=run_id, state=CheckRun.State.DONE).select_related("learner").first()
    if run is None or run.score is None:
        return NOT_SCORED
    if checking.by_staff(run.actor):
        return BY_STAFF
    if is_test_lab(run.lab_key):
        return TEST_LAB
    return record(run.learner, run.course_run, run.usage_id, run.score, run.weight, run_id=run.pk)
