"""The lab state machine: our own provider-neutral states, transitions, deadlines.

Pure Python: imports nothing of the project outside this package and reads no
clock (``now`` is an argument).

A lab row holds what should be (``Desired``) and what is (``State``: our memory of what we last saw
or asked for). What the cloud has (``observed``: a provider ``State``, or None when there is no such
stack) comes from an observation of the stack, or, outside ``OPERATIONS``, from the row's own belief.
``decide`` compares the three and returns one ``Decision``: at most one ``Action`` (one cloud call, or
a probe of the lab's port), the state to record, and the bookkeeping to store. It is level-triggered:
only what the row and the cloud say *now* matters, so a lost task, a crashed worker or a missed tick is
repaired by a later pass.

- The cloud is believed. An operation it reports done advances the row; a stack it is already working
  on is adopted; a stack that vanished is recreated (through REQUESTED); a status no operation of ours
  explains sends the row back to REQUESTED, which adopts whatever the cloud has.
- Every call is in flight (``call_pending_since``) until someone sees the cloud take it: its worker's
  answer, or the cloud showing the operation under way. A call the cloud shows no sign of within the
  acceptance window was lost (a killed worker, an emptied broker): it is issued again at once, with an
  event and no failure counted, long before the deadline (calls are idempotent). A delete its worker
  saw answered is made again too when, past its window, the cloud shows the stack neither deleting
  nor gone (it came before the stack it races: a reset during a create still in flight).
- Every transitional state has a deadline: the backstop for a cloud that took a call and never finishes.
  Past it, or when the cloud reports FAILED during one of our operations, the pass counts a failure and
  reissues the operation; after ``max_attempts`` failures the lab is FAILED with a ``Reason``. Every call
  sets ``next_attempt_at`` (exponential backoff): no failure is judged before it, nor while the call is
  in flight within its acceptance window, so a call that has not landed yet is not taken for a failure.
- A failed create deletes its stack before creating again, so nothing leaks. A stack the cloud reports
  FAILED outside our operations is kept (it may hold the learner's work) and the lab turns FAILED.
- The author's lifecycle scripts (``HOOKED``) run as an ``Action.HOOK`` job before a started lab is
  called READY and before a ready lab is suspended. The lifecycle knows only how long they may take
  (``hook_seconds``) and waits until they end or that time is up (``hook_until``): a script that fails
  or hangs, or a job that is lost, never holds a lab longer, and never fails it.
- FAILED is sticky: ``retry`` (the learner's Retry button) is the only way back up. Desired DELETED is
  still carried out from FAILED, retried at the capped backoff for as long as it takes.

``states`` holds the vocabulary, transitions, deadlines and policy; ``rules`` the decisions.
"""

from labxblock.lifecycle.rules import decide
from labxblock.lifecycle.states import (
    ALLOWED,
    CALLS,
    DEFAULT_DEADLINES,
    DEFAULT_POLICY,
    HOOKED,
    OBSERVABLE,
    OPERATIONS,
    STABLE,
    TRANSITIONAL,
    Action,
    Decision,
    Desired,
    IllegalTransition,
    LabView,
    Phase,
    Policy,
    Reason,
    State,
    backoff_seconds,
    check_transition,
    deadline_for,
    phase,
    retry,
    settled,
)

__all__ = [
    "ALLOWED",
    "CALLS",
    "DEFAULT_DEADLINES",
    "DEFAULT_POLICY",
    "HOOKED",
    "OBSERVABLE",
    "OPERATIONS",
    "STABLE",
    "TRANSITIONAL",
    "Action",
    "Decision",
    "Desired",
    "IllegalTransition",
    "LabView",
    "Phase",
    "Policy",
    "Reason",
    "State",
    "backoff_seconds",
    "check_transition",
    "deadline_for",
    "decide",
    "phase",
    "retry",
    "settled",
]
