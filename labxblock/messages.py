"""The words a learner sees about their lab, and the status answer the page polls.

Message ids are marked with ``_`` (a no-op) for extraction and translated with
the block's i18n service when shown. The JavaScript gets its strings the same
way: translated here and handed to the page (see ``JS_STRINGS``), unless the
platform supplies a compiled catalogue under ``LabBlock.i18n_js_namespace``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from labxblock.lifecycle import Phase, Reason

Gettext = Callable[[str], str]


def _(text: str) -> str:
    return text


PHASES: dict[Phase, str] = {
    Phase.QUEUED: _("Waiting for the cloud to take your lab"),
    Phase.CREATING: _("Creating your lab"),
    Phase.STARTING: _("Starting your lab"),
    Phase.READY: _("Your lab is ready"),
    Phase.SUSPENDING: _("Pausing your lab"),
    Phase.SUSPENDED: _("Your lab is paused"),
    Phase.RESUMING: _("Waking your lab up"),
    Phase.DELETING: _("Removing your lab"),
    # Its stack is deleted to build it afresh (automatic recovery, or a reset): the learner waits for
    # their lab, not for its removal. Operators see the precise state (deleting) in the admin.
    Phase.REBUILDING: _("Your lab is being prepared again"),
    Phase.DELETED: _("No lab yet"),
    Phase.FAILED: _("Your lab could not be started"),
}

# Why a lab failed, in words a learner understands (no cloud vocabulary).
FAILURES: dict[Reason, str] = {
    Reason.QUEUE_TIMEOUT: _("The cloud is busy and could not take your lab in time. Please try again."),
    Reason.CREATE_FAILED: _("The cloud could not build your lab. Please try again."),
    Reason.CREATE_TIMEOUT: _("Building your lab took too long. Please try again."),
    Reason.START_TIMEOUT: _("Your lab was built but does not answer. Please try again."),
    Reason.RESUME_FAILED: _("Your lab could not be woken up. Please try again."),
    Reason.RESUME_TIMEOUT: _("Waking your lab up took too long. Please try again."),
    Reason.STACK_FAILED: _("Your lab broke down. Please try again."),
    Reason.BAD_ADDRESS: _("Your lab's address is refused by this site's network policy, so the lab was "
                          "stopped. Please tell the course team."),
}
# Added for course staff to a failed lab's message: the reason's word. The cloud's own words (and any
# address of this site's services) stay with the operators: the admin and the labxblock command.
STAFF_DETAIL = _("For course staff: {reason}; details are in the lab's event log (operators).")
GENERIC_FAILURE = _("Something went wrong with your lab. Please try again.")
NOT_CONFIGURED = _("This lab is not set up correctly yet. Please tell the course team.")
SITE_NOT_CONFIGURED = _("Labs are not configured on this site.")
NOT_SIGNED_IN = _("Please sign in to use this lab.")
NO_SUCH_PORT = _("This lab has no such port.")
NO_CHECKS = _("This lab has no progress checks.")
TERMINAL_UNAVAILABLE = _("The lab cannot be shown on this site yet. Please tell the course team.")
NOT_READY = _("Your lab is not ready yet.")
BAD_PORT = _("This lab's port is not set up correctly, so it cannot be shown. Please tell the course team.")
# Never which rule refused the address: where the site's own services are is for operators only.
ADDRESS_REFUSED = _("This lab's address is refused by this site's network policy, so it cannot be shown. "
                    "Please tell the course team.")
MASQUERADE = _("You are viewing the lab of {username}. What you do here happens in their lab.")
LMS_ONLY = _("Labs run in the LMS, not in Studio. View this unit in the LMS to try the lab.")
STUDIO_ONLY = _("Test labs are launched from Studio, by the course team.")
# Time budgets (labs.budgets): shown beside the time left.
BUDGET_USED_UP = _("Your lab time for this course is used up. Your lab is paused and keeps your work; "
                   "ask the course team if you need more time.")
BUDGET_WARNING = _("Most of your lab time for this course is used. Suspended time does not count.")

# Progress checks: how a run went, in the learner's words. A run that was not scored says so.
CHECK_RUNNING = _("Checking your lab…")
CHECK_FAILED: dict[str, str] = {
    "not_ready": _("Your lab is paused or not ready, so it was not checked. Resume your lab, then check "
                   "again. This did not affect your score."),
    "unreachable": _("Your lab did not answer, so it was not checked. Make sure it is running, then check "
                     "again. This did not affect your score."),
    "auth": _("Your lab could not be logged in to, so it was not checked. This did not affect your score. "
              "If it happens again, reset your lab or tell the course team."),
    "host_key": _("Your lab could not be verified, so it was not checked. This did not affect your score. "
                  "Please tell the course team."),
    "lost": _("The check did not finish. Please try again; this did not affect your score."),
    "bad_address": _("Your lab's address is refused by this site's network policy, so it was not checked. "
                     "This did not affect your score. Please tell the course team."),
}
CHECK_DONE = _("{passed} of {total} checks passed. Score: {percent}%.")
CHECK_DONE_SCORE = _("Score: {percent}%.")
CHECK_RECORDED = _("Your progress was checked and recorded.")
CHECK_PASSED = _("Passed")
CHECK_NOT_PASSED = _("Not yet")
CHECK_TIMED_OUT = _("This check took longer than {seconds} seconds and was stopped.")
CHECK_NOT_RUN = _("This check could not run: {error}.")
CHECK_EXIT = _("This check failed (exit status {status}).")
HINT_CHARS = 500  # of stderr, when the author gave no hint

# Strings the page's JavaScript shows; keep in step with gettext("…") calls in labxblock.js.
JS_STRINGS = (
    _("Elapsed: {elapsed}"),
    _("Usually takes about {estimate}"),
    _("Retry"),
    _("Reset lab"),
    _("Resetting deletes everything in your lab and starts a fresh one. Continue?"),
    _("Are you still there?"),
    _("Your lab will be paused soon to save resources. Press the button to keep it running."),
    _("I'm still here"),
    _("Cannot reach the server. Retrying…"),
    _("Checking…"),
    _("Open in a new window"),
    _("Port"),
    _("Yes, reset"),
    _("Cancel"),
    _("{minutes} min {seconds} s"),
    _("{seconds} s"),
    _("Your last checks"),
    _("{score}% on {when}"),
    _("not scored on {when}"),
    _("{status}. Go back to the course page to continue."),
    _("Your lab was paused to save resources. Press the button to wake it up."),
    _("The course page was closed, so typing here no longer keeps your lab running. Open the course page "
      "again to keep working."),
    _("Lab time left: {time}"),
    _("{hours} h {minutes} min"),
)

# How soon the page should ask again, by phase (ms): fast while something is happening.
# "Ready" must show within 2 s of the stack becoming ready; the reconciler notices within its
# 1 s tick, so the page asks every 0.5 s once the cloud is working on the lab (a status answer
# is two indexed queries).
POLL_MS: dict[Phase, int] = {
    Phase.QUEUED: 1000, Phase.CREATING: 500, Phase.STARTING: 500, Phase.RESUMING: 500,
    Phase.SUSPENDING: 2000, Phase.DELETING: 2000, Phase.REBUILDING: 1000,
}


def js_catalogue(gettext: Gettext, strings: tuple[str, ...] = JS_STRINGS) -> dict[str, str]:
    """The page's strings (or a script's ``strings``), translated."""
    return {msgid: gettext(msgid) for msgid in strings}


def status_answer(status: Any, now: datetime, gettext: Gettext, *, staff: bool = False) -> dict[str, Any]:
    """The JSON the page gets for a ``labs.LabStatus`` (or None: no lab yet).

    ``staff``: the viewer is course staff, who also read the word for why a lab failed.
    """
    if status is None:
        return {"phase": str(Phase.DELETED), "label": gettext(PHASES[Phase.DELETED]), "ready": False,
                "elapsed_seconds": None, "estimate_seconds": None, "error": None, "poll_ms": None,
                "budget": None}
    phase = Phase(status.phase)
    error = None
    if phase is Phase.FAILED:
        reason = Reason(status.reason) if status.reason else None
        error = gettext(FAILURES.get(reason, GENERIC_FAILURE))  # type: ignore[arg-type]
        if staff and reason is not None:
            error = f"{error} {gettext(STAFF_DETAIL).format(reason=reason.value)}"
    elapsed = max(0.0, (now - status.since).total_seconds()) if status.since else None
    return {
        "phase": str(phase),
        "label": gettext(PHASES[phase]),
        "ready": bool(status.ready),
        "elapsed_seconds": elapsed,
        "estimate_seconds": status.estimate_seconds,
        "error": error,
        "poll_ms": POLL_MS.get(phase),
        "budget": budget_answer(status.budget, gettext),
    }


def budget_answer(budget: Any, gettext: Gettext) -> dict[str, Any] | None:
    """The learner's time budget (``labs.budgets.Budget``) for the page: the seconds, and what to say."""
    if budget is None:
        return None
    message = BUDGET_USED_UP if budget.exhausted else BUDGET_WARNING if budget.warning else ""
    return {**budget.as_json(), "message": gettext(message) if message else ""}


def error_answer(message: str, gettext: Gettext, **params: Any) -> dict[str, Any]:
    """A learner-visible error with no lab status."""
    return {"error": gettext(message).format(**params)}


def _percent(score: float | None) -> int:
    return round((score or 0.0) * 100)


def _check_line(result: dict[str, Any], gettext: Gettext) -> dict[str, Any]:
    """One check as the page lists it; a failure explained by the hint, else by what went wrong."""
    explanation = ""
    if not result.get("passed"):
        if result.get("hint"):
            explanation = result["hint"]
        elif result.get("error"):
            explanation = gettext(CHECK_NOT_RUN).format(error=result["error"])
        elif result.get("timed_out"):
            explanation = gettext(CHECK_TIMED_OUT).format(seconds=round(result.get("seconds") or 0))
        elif (result.get("stderr") or "").strip():
            explanation = result["stderr"].strip()[-HINT_CHARS:]  # shown as text, never as markup
        else:
            explanation = gettext(CHECK_EXIT).format(status=result.get("exit_status"))
    return {"name": result.get("name", ""), "passed": bool(result.get("passed")),
            "label": gettext(CHECK_PASSED if result.get("passed") else CHECK_NOT_PASSED), "hint": explanation}


def check_answer(runs: list[Any], feedback: str, gettext: Gettext) -> dict[str, Any]:
    """The JSON the page gets about checks: the latest run (``labs.checking.CheckRunView``) and history.

    ``feedback`` is the author's choice: ``full`` (score, each check and hints), ``score``, ``none``.
    """
    latest = runs[0] if runs else None
    answer: dict[str, Any] = {"state": None, "running": False, "poll_ms": None, "message": "",
                              "score": None, "results": [], "history": []}
    if latest is None:
        return answer
    answer.update(state=latest.state, running=latest.running)
    if latest.running:
        answer.update(message=gettext(CHECK_RUNNING), poll_ms=1000)
    elif latest.state == "failed":
        answer["message"] = gettext(CHECK_FAILED.get(latest.reason, CHECK_FAILED["lost"]))
    elif feedback == "none":
        answer["message"] = gettext(CHECK_RECORDED)
    else:
        passed = sum(1 for r in latest.results if r.get("passed"))
        template = CHECK_DONE if feedback == "full" else CHECK_DONE_SCORE
        answer["message"] = gettext(template).format(passed=passed, total=len(latest.results),
                                                     percent=_percent(latest.score))
        answer["score"] = latest.score
        if feedback == "full":
            answer["results"] = [_check_line(r, gettext) for r in latest.results]
    if feedback != "none":
        answer["history"] = [{"at": run.started_at.isoformat(), "state": run.state,
                              "score": run.score if run.state == "done" else None}
                             for run in runs if not run.running]
    return answer
