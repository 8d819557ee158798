"""Heat's stack statuses mapped into labxblock's own states.

Heat reports ``<ACTION>_<STATUS>`` (``CREATE_COMPLETE``, ``SUSPEND_IN_PROGRESS``…).
This module is the only place those words are interpreted; the rest of the
project sees :class:`~labxblock.lifecycle.State` and keeps the raw word for
operators.
"""

from __future__ import annotations

import re

from labxblock.lifecycle import State

#: Every action Heat reports (heat.engine.stack.Stack.ACTIONS).
ACTIONS = ("INIT", "CREATE", "DELETE", "UPDATE", "ROLLBACK", "SUSPEND", "RESUME",
           "ADOPT", "SNAPSHOT", "CHECK", "RESTORE")
#: Every status Heat reports (heat.engine.stack.Stack.STATUSES).
STATUSES = ("IN_PROGRESS", "FAILED", "COMPLETE")

# (action, status) -> state. Any *_FAILED is FAILED: the stack is not in the shape
# we asked for, and the raw status tells the operator which step broke.
_IN_PROGRESS = {
    "INIT": State.CREATING,
    "CREATE": State.CREATING,
    "ADOPT": State.CREATING,
    # We never update or restore; an operator might. The lab is not usable meanwhile.
    "UPDATE": State.CREATING,
    "RESTORE": State.CREATING,
    "SUSPEND": State.SUSPENDING,
    "RESUME": State.RESUMING,
    "DELETE": State.DELETING,
    # We create with disable_rollback, so a rollback means someone else's update or
    # create went wrong: the stack will not end up as the lab we asked for.
    "ROLLBACK": State.FAILED,
    # Check and snapshot leave a running stack running.
    "CHECK": State.READY,
    "SNAPSHOT": State.READY,
}
_COMPLETE = {
    "INIT": State.CREATING,  # INIT_COMPLETE is the instant before CREATE starts
    "CREATE": State.READY,
    "ADOPT": State.READY,
    "UPDATE": State.READY,
    "RESTORE": State.READY,
    "SUSPEND": State.SUSPENDED,
    "RESUME": State.READY,
    "DELETE": State.DELETED,
    "ROLLBACK": State.FAILED,
    "CHECK": State.READY,
    "SNAPSHOT": State.READY,
}


# A delete of a stack in progress first stops the action under way: Heat marks the stack
# "<ACTION>_FAILED" with this reason (heat.engine.worker._stop_traversal), then deletes it.
# That is the delete at work, not a failure. (An operator's cancel of an update says the
# same before a rollback, so UPDATE is left out.)
_CANCELLED = re.compile(r"Stack (?P<action>[A-Z]+) cancelled")


def heat_state(raw_status: str, reason: str = "") -> State:
    """Map a Heat ``stack_status`` such as ``CREATE_COMPLETE`` (and its reason) to our :class:`State`.

    A status Heat may add in a later release maps to FAILED, so it is seen by an
    operator rather than silently treated as usable.
    """
    action, _, status = (raw_status or "").upper().partition("_")
    if status == "FAILED" and action in ACTIONS:
        cancelled = _CANCELLED.fullmatch((reason or "").strip())
        if cancelled and cancelled["action"] == action and action != "UPDATE":
            return State.DELETING
        return State.FAILED
    if status == "IN_PROGRESS":
        return _IN_PROGRESS.get(action, State.FAILED)
    if status == "COMPLETE":
        return _COMPLETE.get(action, State.FAILED)
    return State.FAILED


def outputs_are_final(raw_status: str) -> bool:
    """Whether a stack in ``raw_status`` has outputs worth reading (it is complete)."""
    return heat_state(raw_status) == State.READY and raw_status.upper().endswith("_COMPLETE")
