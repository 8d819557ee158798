"""What the block tells labs about a lab (LabSpec), and what it gets back (LabStatus)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from labxblock.lifecycle import Desired, Phase, Reason, State


@dataclass(frozen=True)
class ProviderChoice:
    """One provider a lab may run on, in the author's order of preference."""

    name: str
    capacity: int | None = None  # this lab's own cap on the provider (None: the provider's own)
    template: str = ""  # template text
    environment: str | None = None  # environment text


@dataclass(frozen=True)
class LabSpec:
    """Everything labs needs to launch one lab; built by the block from its fields."""

    course_run: str
    lab_key: str
    providers: tuple[ProviderChoice, ...]
    stack_user: str = "training"
    protocol: str = "ssh"
    port: int | None = None
    key_type: str = "ed25519"
    launch_timeout: int | None = None  # None: the site's setting
    suspend_timeout: int | None = None
    delete_timeout: int | None = None
    parameters: dict[str, str] = field(default_factory=dict)  # extra template parameters
    tags: tuple[str, ...] = ()  # extra cloud tags on the stack, after the site's (a Studio test lab's)
    # The lifecycle scripts, complete (``authoring.hook_specs``): kind, name, script, timeout, host.
    hooks: tuple[dict[str, Any], ...] = ()
    time_budget_seconds: float | None = None  # this block's budget; None: the site's (labs.budgets)
    block_id: str = ""  # the block opening the lab (its usage id): budgets are kept per block

    def blueprint(self) -> dict[str, Any]:
        """The part stored once and shared: what to build and run in it, not whose it is or its timeouts."""
        blueprint = {
            "providers": [asdict(choice) for choice in self.providers],
            "stack_user": self.stack_user,
            "protocol": self.protocol,
            "port": self.port,
            "key_type": self.key_type,
            "parameters": {"run": self.course_run, **self.parameters},
        }
        if self.tags:  # absent otherwise: learners' blueprints keep the digests they had
            blueprint["tags"] = list(self.tags)
        if self.hooks:  # only then: a lab without scripts keeps the blueprint (and digest) it had
            blueprint["hooks"] = [dict(hook) for hook in self.hooks]
        return blueprint


def blueprint_digest(blueprint: dict[str, Any]) -> str:
    """A content address for a blueprint: equal content, equal digest."""
    canonical = json.dumps(blueprint, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class LabStatus:
    """What the learner's view shows: no secret is ever in here."""

    lab_id: int
    phase: Phase
    state: State
    desired: Desired
    reason: Reason | str | None  # why the lab failed or changed, for the learner's message
    since: datetime | None  # when the current state began
    estimate_seconds: float | None  # typical launch time of this lab, once there is history
    ready: bool
    budget: Any = None  # labs.budgets.Budget: the learner's time budget for this lab; None: none

    @property
    def used_up(self) -> bool:
        """The lab's time budget is used up: it is kept down, and a launch answers so."""
        return bool(self.budget is not None and self.budget.exhausted)

    def as_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "state": self.state.value,
            "desired": self.desired.value,
            "reason": str(self.reason) if self.reason else None,
            "since": self.since.isoformat() if self.since else None,
            "estimate_seconds": self.estimate_seconds,
            "ready": self.ready,
            "budget": self.budget.as_json() if self.budget is not None else None,
        }


@dataclass(frozen=True)
class TerminalAccess:
    """What a terminal login carries; only handed to tickets.mint_ticket or guacamole_json, never a page."""

    lab_id: int
    stack_name: str
    protocol: str
    host: str  # the checked address
    port: int  # checked: 1-65535
    username: str
    private_key: str = field(repr=False, default="")
    password: str = field(repr=False, default="")
    host_key: str = ""
    rdp_cert_fingerprints: str = ""  # the template's output of that name: the RDP certificates to accept


DEFAULT_PORTS = {"ssh": 22, "rdp": 3389, "vnc": 5900}

# A Studio test lab's lab key starts with this: never a learner's lab (usage, grades, estimates).
TEST_LAB_PREFIX = "studio-test:"


def is_test_lab(lab_key: str) -> bool:
    """Is ``lab_key`` a Studio test lab's (see ``labs.testlabs``)?"""
    return lab_key.startswith(TEST_LAB_PREFIX)
