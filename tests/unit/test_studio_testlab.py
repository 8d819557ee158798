"""The test lab's words for the author: one for every phase the lifecycle can show."""

from __future__ import annotations

from labxblock.lifecycle import Phase
from labxblock.studio_testlab import STATUS_LABELS


def test_every_phase_has_the_test_labs_own_words() -> None:
    assert set(STATUS_LABELS) == {phase.value for phase in Phase}
