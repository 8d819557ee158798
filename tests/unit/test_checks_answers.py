"""What the page is told about check runs (messages.check_answer) and how a script is started."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from labxblock import checks, messages
from labxblock.labs.checking import REASONS, CheckRunView

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RESULTS = (
    {"name": "nginx", "passed": False, "hint": "Start nginx.", "stderr": "inactive\n"},
    {"name": "file", "passed": False, "hint": "", "stderr": "x" * 600 + "<b>no such file</b>\n"},
    {"name": "slow", "passed": False, "hint": "", "timed_out": True, "seconds": 30.2},
    {"name": "db", "passed": False, "hint": "", "error": "cannot reach db"},
    {"name": "quiet", "passed": False, "hint": "", "exit_status": 2},
    {"name": "ok", "passed": True, "hint": "Never shown for a pass."},
)


def run(state: str = "done", reason: str = "", score: float | None = 0.25, results=RESULTS) -> CheckRunView:
    return CheckRunView(1, state, reason, AT, AT, score, results)


def test_full_feedback_explains_each_failure() -> None:
    answer = messages.check_answer([run()], "full", str)
    assert answer["message"] == "1 of 6 checks passed. Score: 25%." and answer["score"] == 0.25
    hints = [r["hint"] for r in answer["results"]]
    assert hints[0] == "Start nginx."  # the author's hint first
    assert hints[1].endswith("<b>no such file</b>") and len(hints[1]) == messages.HINT_CHARS  # stderr's tail
    assert hints[2] == "This check took longer than 30 seconds and was stopped."
    assert hints[3] == "This check could not run: cannot reach db."
    assert hints[4] == "This check failed (exit status 2)."
    assert hints[5] == "" and answer["results"][5]["label"] == "Passed"
    assert answer["history"] == [{"at": AT.isoformat(), "state": "done", "score": 0.25}]


def test_score_and_none_feedback_say_less() -> None:
    score_only = messages.check_answer([run()], "score", str)
    assert score_only["message"] == "Score: 25%." and score_only["results"] == []
    nothing = messages.check_answer([run()], "none", str)
    assert nothing["message"] == "Your progress was checked and recorded."
    assert nothing["score"] is None and nothing["results"] == [] and nothing["history"] == []


@pytest.mark.parametrize("reason", REASONS)
def test_every_failure_is_explained_and_not_scored(reason: str) -> None:
    answer = messages.check_answer([run("failed", reason, None, ())], "full", str)
    assert answer["message"] == messages.CHECK_FAILED[reason]
    assert "did not affect your score" in answer["message"] and answer["score"] is None


def test_a_running_run_asks_the_page_to_poll_and_stays_out_of_history() -> None:
    answer = messages.check_answer([run("running", "", None, ()), run()], "full", str)
    assert answer["running"] and answer["poll_ms"] and answer["message"] == "Checking your lab…"
    assert len(answer["history"]) == 1


@pytest.mark.parametrize(("script", "interpreter"), [
    ("test -f x", ["/bin/sh"]),
    ("#!/bin/bash\necho", ["/bin/bash"]),
    ("#! /usr/bin/env python3 -u\nprint()", ["/usr/bin/env", "python3 -u"]),  # one argument, like the kernel
])
def test_the_interpreter_is_named_on_the_command_line(script: str, interpreter: list[str]) -> None:
    inner = shlex.split(checks.remote_command(checks.CheckSpec("x", script, timeout=7.2)))[2]
    runner = " ".join(map(shlex.quote, interpreter))
    assert f'timeout -k {checks.KILL_GRACE_SECONDS} 8 {runner} "$d/check"' in inner
    assert inner.startswith("umask 077;") and script not in inner  # the script travels on stdin
