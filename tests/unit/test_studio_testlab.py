"""The test lab's words for the author (one for every phase the lifecycle can show), and who may test."""

from __future__ import annotations

from types import SimpleNamespace

from labxblock import compat
from labxblock.lifecycle import Phase
from labxblock.studio_testlab import STATUS_LABELS


def test_every_phase_has_the_test_labs_own_words() -> None:
    assert set(STATUS_LABELS) == {phase.value for phase in Phase}


def test_without_edx_platform_a_runtime_other_than_the_workbench_lets_nobody_test(caplog) -> None:
    """No course roles to ask: only the workbench (a developer's tool, anyone plays anyone) lets anyone."""
    from xblock.test.toy_runtime import ToyRuntime

    block = SimpleNamespace(runtime=ToyRuntime())
    assert compat.can_edit_course(block, SimpleNamespace(pk=1, is_staff=True)) is False
    assert "no course roles to check in runtime ToyRuntime: test labs refused" in caplog.text
