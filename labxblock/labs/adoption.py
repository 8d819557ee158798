"""Stacks made by another system, taken into labxblock's care: a Lab row that points at them.

For ``labxblock_migrate_legacy_stacks``: a learner's stack from stackamole/hastexo keeps
its name (the cloud knows it by that; it does not follow labxblock's naming) and becomes
the learner's lab of the course run. Such a stack carries no install tag, so the
provider's lists do not show it; the row says so (``UNTAGGED`` in its provider state). The
command then asks the provider to tag it (``Provider.add_tags``; Heat: an update that
changes nothing but the tags), and once the audit's full list shows the stack as the row
believes it, the mark goes (``tagged``): the stack is an ordinary one. Until then, and for
good where tagging failed (a cloud that cannot, a stack Heat will not update because it is
suspended), the engine reads it one by one: the observer every in-flight stack its list of
stacks in progress does not show, the audit every lab at rest its full list does not show
(``labs.observe``). When the stack is deleted and the lab made again, the new stack is an
ordinary one and the mark goes too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from labxblock.conf import get_settings
from labxblock.labs import addressing
from labxblock.labs.jobs import output_fields
from labxblock.labs.specs import DEFAULT_PORTS
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent, Protocol
from labxblock.secret import hide_outputs

UNTAGGED = "untagged"  # key in Lab.provider_state: the stack has no install tag
ADOPTABLE = {State.READY: Desired.UP, State.SUSPENDED: Desired.SUSPENDED}
ACTOR = "migration"


@dataclass(frozen=True)
class Stray:
    """A stack to adopt: whose it is, where it runs, and what its old record knew."""

    stack_name: str
    learner_id: int
    course_run: str
    lab_key: str
    provider: str
    provider_state: dict[str, Any]
    state: State  # READY or SUSPENDED, as the cloud says now
    raw_status: str = ""
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)  # the cloud's, may hold secrets
    fallback: dict[str, Any] = field(default_factory=dict, repr=False)  # ip, private_key, password on record
    stack_user: str = ""
    protocol: str = ""
    port: int | None = None
    launched_at: datetime | None = None
    suspended_at: datetime | None = None
    delete_by: datetime | None = None
    origin: str = ""  # where it came from, for the event: "stackamole_stack id 7"

    def __post_init__(self) -> None:
        # Secrets are Secrets wherever a Stray goes (a traceback's locals, an error report).
        object.__setattr__(self, "outputs", hide_outputs(self.outputs, get_settings().is_secret_output))
        object.__setattr__(self, "fallback", hide_outputs(self.fallback, lambda name: name != "ip"))


ALREADY = "already adopted"


def obstacle(stray: Stray) -> str | None:
    """Why ``stray`` cannot be adopted now (or ``ALREADY``); None when it can."""
    if stray.state not in ADOPTABLE:
        return f"the stack is {stray.state.value}"
    if not get_user_model().objects.filter(pk=stray.learner_id).exists():
        return f"there is no user {stray.learner_id}"
    existing = Lab.objects.filter(learner_id=stray.learner_id, course_run=stray.course_run,
                                  lab_key=stray.lab_key).values_list("stack_name", flat=True).first()
    if existing == stray.stack_name:
        return ALREADY
    if existing is not None:
        return f"the learner already has the lab {existing}"
    if Lab.objects.filter(stack_name=stray.stack_name).exists():
        return "another lab has this stack name"
    ip, port = _address(stray)
    try:
        addressing.check(stray.provider, ip, port or DEFAULT_PORTS.get(stray.protocol, 22))
    except addressing.AddressRefused as exc:  # the learner could not be shown it: say so now
        return f"this site refuses its address: {exc}"
    return None


def adopt(stray: Stray, now: datetime) -> str:
    """Make ``stray`` the learner's lab; idempotent. Returns what happened, in a few words."""
    reason = obstacle(stray)
    if reason is not None:
        return reason if reason == ALREADY else f"not adopted: {reason}"
    try:
        with transaction.atomic():
            lab = Lab.objects.create(**_fields(stray, now))
            LabEvent.record(lab, actor=ACTOR, reason=f"adopted from {stray.origin}", from_state="",
                            to_state=lab.state, at=now)
    except IntegrityError:  # a concurrent run or the learner's own launch won the race
        return "not adopted: the learner's lab was made meanwhile"
    return "adopted"


def _address(stray: Stray) -> tuple[str, int | None]:
    """The stack's address and port: its outputs', else the old record's."""
    ip = str(stray.outputs.get("public_ip") or stray.fallback.get("ip") or "")
    port = stray.outputs.get("port")
    return ip, int(port) if str(port or "").strip().isdigit() else stray.port


def _fields(stray: Stray, now: datetime) -> dict[str, Any]:
    settings = get_settings()
    cloud = output_fields(stray.outputs)  # the cloud's word first, the old record's where it is silent
    ip, port = _address(stray)
    ready = stray.state is State.READY
    keep_until = stray.delete_by if stray.delete_by and stray.delete_by > now else None
    return {
        "learner_id": stray.learner_id, "course_run": stray.course_run, "lab_key": stray.lab_key,
        "stack_name": stray.stack_name, "provider": stray.provider,
        "provider_state": {**stray.provider_state, UNTAGGED: True},
        "desired": ADOPTABLE[stray.state].value, "state": stray.state.value,
        "raw_status": stray.raw_status[:64], "outputs": cloud["outputs"], "ip": ip, "port": port,
        "private_key": cloud.get("private_key") or stray.fallback.get("private_key") or "",
        "password": cloud.get("password") or stray.fallback.get("password") or "",
        "secret_outputs": cloud["secret_outputs"], "stack_user": stray.stack_user or "training",
        "protocol": stray.protocol if stray.protocol in Protocol.values else Protocol.SSH.value,
        "state_changed_at": now, "launched_at": stray.launched_at or now,
        "suspended_at": None if ready else (stray.suspended_at or now),
        # A running stack is the learner's until they stop using it, as any lab; then it is suspended.
        "last_seen_at": now, "idle_at": now + timedelta(seconds=settings.suspend_timeout) if ready else None,
        "delete_by": keep_until or now + timedelta(seconds=settings.delete_timeout),
    }


def still_untagged(stack_name: str) -> bool:
    """Does the live lab of this stack still wait for its stack to be seen tagged?"""
    live = Lab.objects.filter(stack_name=stack_name).exclude(state=State.DELETED)
    lab = live.only("provider_state").first()
    return lab is not None and UNTAGGED in (lab.provider_state or {})


def untagged(provider: str, states: list[State]) -> dict[int, tuple[str, State, Any]]:
    """The provider's adopted labs in ``states`` not yet seen tagged: {id: (stack name, state, stamp)}."""
    rows = Lab.objects.filter(provider=provider, state__in=states, provider_state__has_key=UNTAGGED)
    return {pk: (name, State(state), changed) for pk, name, state, changed
            in rows.values_list("pk", "stack_name", "state", "state_changed_at")}


def tagged(found: dict[int, tuple[str, State, Any]]) -> int:
    """Those adopted labs' stacks are in the tag's lists now, as the rows believe them: the mark goes
    (for a row that has not moved since it was read; the next audit sees the others again)."""
    done = 0
    for pk, (_, state, changed) in found.items():
        unmoved = Lab.objects.filter(pk=pk, state=state, state_changed_at=changed)
        lab = unmoved.only("provider_state").first()
        if lab is not None and UNTAGGED in lab.provider_state:
            rest = {key: value for key, value in lab.provider_state.items() if key != UNTAGGED}
            done += unmoved.update(provider_state=rest)
    return done


def owned(stack_names: list[str]) -> set[str]:
    """Which of these stacks a live lab points at (never to be deleted from under it)."""
    return set(Lab.objects.filter(stack_name__in=stack_names).exclude(state=State.DELETED)
               .values_list("stack_name", flat=True))
