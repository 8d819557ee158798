"""The lab state machine: our own provider-neutral states, transitions, deadlines.

Pure Python: imports nothing of the project, takes ``now`` as an argument.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    """Where a lab is, in labxblock's own words (never a cloud's status words)."""

    REQUESTED = "requested"  # row exists; no cloud stack has been asked for yet
    CREATING = "creating"  # the cloud accepted the create and is working
    STARTING = "starting"  # the cloud is done; waiting for the lab to answer
    READY = "ready"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESUMING = "resuming"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class Desired(enum.StrEnum):
    """What a lab should be."""

    UP = "up"
    SUSPENDED = "suspended"
    DELETED = "deleted"
