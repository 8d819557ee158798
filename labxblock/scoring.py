"""How a lab is scored and completed, in the calls edx-platform makes on a block.

A lab with checks is scored: its score is the learner's last finished check run (never one
that staff started while viewing as the learner), as a share of ``weight`` points
(``max_score`` is the weight, so an instructor's override is entered in points).
edx-platform overrides a score with ``set_score`` then ``publish_grade``, and the override
stands until the learner's next check run; it rescores with ``rescore``, which goes
``has_submitted_answer`` → ``calculate_score`` → ``_publish_grade``. Every grade the block
publishes through its runtime (the courseware record) also goes to edx-submissions
(``labs.grading``), which the grades app reads first, so an override is never masked by an
older worker score.

A lab without checks is not scored (edx-platform reads ``has_score`` from the instance)
and marks itself complete the first time the learner's lab is ready. Completion is
custom for every lab, so a lab with checks completes itself when its first score is
published by the block (the platform's "complete when scored" reads the class, not the
instance, and skips blocks with custom completion).
"""

from __future__ import annotations

from typing import Any

from xblock.completable import CompletableXBlockMixin
from xblock.scorable import ScorableXBlockMixin, Score

from labxblock import authoring, compat, gradebook


def _checking() -> Any:
    from labxblock.labs import checking  # models need Django's apps ready (see block._labs)

    return checking


def _grading() -> Any:
    from labxblock.labs import grading

    return grading


class LabScoringMixin(CompletableXBlockMixin, ScorableXBlockMixin):
    """Scoring (ScorableXBlockMixin) and completion (custom, COMPLETABLE) of a LabBlock."""

    @property
    def has_score(self) -> bool:  # type: ignore[override]
        """Only a lab with checks has a score: one without would count 0 of its weight for ever."""
        return bool(authoring.check_specs(self._values()))

    def _points(self) -> float:
        return 1.0 if self.weight is None else float(self.weight)

    def max_score(self) -> float:
        """The lab's points: its weight (the platform checks an override against this)."""
        return self._points()

    def has_submitted_answer(self) -> bool:
        """A check run was scored: the block holds it, or the worker recorded it with no page open."""
        return self.raw_earned is not None or self._recorded_score() is not None

    def get_score(self) -> Score:
        return Score(raw_earned=(self.raw_earned or 0.0) * self._points(), raw_possible=self._points())

    def set_score(self, score: Score) -> None:
        """An instructor's override: it stands until the learner's next check run.

        The runs there are now count as graded, so the page does not publish the last one over it.
        """
        self.raw_earned = score.raw_earned / score.raw_possible if score.raw_possible else 0.0
        viewer = compat.viewer(self)
        if viewer is not None:
            latest = _checking().latest_scored_run(viewer.user, compat.course_run(self), self._usage_key())
            self.graded_run = latest if latest is not None else self.graded_run

    def calculate_score(self) -> Score:
        """Rescoring: the learner's last scored check run, as recorded (scripts are not run again)."""
        recorded = self._recorded_score()
        if recorded is None:
            return self.get_score()
        return Score(raw_earned=recorded * self._points(), raw_possible=self._points())

    def publish_grade(self) -> None:
        """Publish the score the block holds: edx-platform's score override calls ``set_score``, then this."""
        self._publish_grade(self.get_score())

    def _publish_grade(self, score: Score, only_if_higher: bool | None = None) -> None:
        """The runtime's grade event (the courseware record), and the same score into edx-submissions."""
        super()._publish_grade(score, only_if_higher)
        self._record_points(score, only_if_higher=bool(only_if_higher))
        self._complete()

    def _grade_run(self, run: Any) -> None:
        """A finished check run the block has not graded yet becomes the learner's score."""
        self.raw_earned, self.graded_run = run.score, run.id
        score = self.get_score()
        super()._publish_grade(score)
        self._record_points(score, run_id=run.id)  # a no-op when the worker recorded this run
        self._complete()

    def _record_points(self, score: Score, *, run_id: int | None = None, only_if_higher: bool = False) -> str:
        grading = _grading()
        viewer = compat.viewer(self) if gradebook.submissions_api() is not None else None
        if viewer is None or viewer.masquerading:
            return grading.UNAVAILABLE
        share = score.raw_earned / score.raw_possible if score.raw_possible else 0.0
        return grading.record(viewer.user, compat.course_run(self), self._usage_key(), share, self.weight,
                              run_id=run_id, only_if_higher=only_if_higher)

    def _recorded_score(self) -> float | None:
        viewer = compat.viewer(self)
        if viewer is None:
            return None
        return _checking().latest_score(viewer.user, compat.course_run(self), self._usage_key())

    # --- completion ---

    def _complete(self) -> None:
        """Tell the runtime the learner completed this lab, once."""
        if not self.completed:
            self.emit_completion(1.0)
            self.completed = True

    def _complete_when_ready(self, answer: dict[str, Any]) -> None:
        """A lab without checks is done once the learner has it: the first ready status completes it."""
        if answer.get("ready") and not self.completed and not self.has_score:
            viewer = compat.viewer(self)
            if viewer is not None and not viewer.masquerading:
                self._complete()
