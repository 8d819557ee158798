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
}
GENERIC_FAILURE = _("Something went wrong with your lab. Please try again.")
NOT_CONFIGURED = _("This lab is not set up correctly yet. Please tell the course team.")
NOT_SIGNED_IN = _("Please sign in to use this lab.")
NO_SUCH_PORT = _("This lab has no such port.")
CHECK_UNAVAILABLE = _("Progress checks are not available yet.")
TERMINAL_UNAVAILABLE = _("The lab cannot be shown on this site yet. Please tell the course team.")
NOT_READY = _("Your lab is not ready yet.")
MASQUERADE = _("You are viewing the lab of {username}. What you do here happens in their lab.")

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
)

# How soon the page should ask again, by phase (ms): fast while something is happening.
# "Ready" must show within 2 s of the stack becoming ready; the reconciler notices within its
# 1 s tick, so the page asks every 0.5 s once the cloud is working on the lab (a status answer
# is two indexed queries).
POLL_MS: dict[Phase, int] = {
    Phase.QUEUED: 1000, Phase.CREATING: 500, Phase.STARTING: 500, Phase.RESUMING: 500,
    Phase.SUSPENDING: 2000, Phase.DELETING: 2000,
}


def js_catalogue(gettext: Gettext) -> dict[str, str]:
    """The page's strings, translated."""
    return {msgid: gettext(msgid) for msgid in JS_STRINGS}


def status_answer(status: Any, now: datetime, gettext: Gettext) -> dict[str, Any]:
    """The JSON the page gets for a ``labs.LabStatus`` (or None: no lab yet)."""
    if status is None:
        return {"phase": str(Phase.DELETED), "label": gettext(PHASES[Phase.DELETED]), "ready": False,
                "elapsed_seconds": None, "estimate_seconds": None, "error": None, "poll_ms": None}
    phase = Phase(status.phase)
    error = None
    if phase is Phase.FAILED:
        reason = Reason(status.reason) if status.reason else None
        error = gettext(FAILURES.get(reason, GENERIC_FAILURE))  # type: ignore[arg-type]
    elapsed = max(0.0, (now - status.since).total_seconds()) if status.since else None
    return {
        "phase": str(phase),
        "label": gettext(PHASES[phase]),
        "ready": bool(status.ready),
        "elapsed_seconds": elapsed,
        "estimate_seconds": status.estimate_seconds,
        "error": error,
        "poll_ms": POLL_MS.get(phase),
    }


def error_answer(message: str, gettext: Gettext, **params: Any) -> dict[str, Any]:
    """A learner-visible error with no lab status."""
    return {"error": gettext(message).format(**params)}
