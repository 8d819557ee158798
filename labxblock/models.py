"""Lab (one stack per learner, course run and lab key) and its append-only LabEvent log."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.dispatch import Signal
from django.utils import timezone

from labxblock.crypto import EncryptedTextField, Sealed, SecretUnavailable, reseal, unseal
from labxblock.lifecycle import Desired, State
from labxblock.secret import Secret, hide

STACK_NAME_MAX = 64
REDACTED = "[redacted]"
# Encrypted columns: never loaded where they are not needed, never shown in the admin.
SECRET_FIELDS = ("private_key", "password", "secret_outputs")
# A private key pasted into a reason is redacted even when the lab's own key is unknown.
_PEM_RE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S
)


def _choices(enum: Any) -> list[tuple[str, str]]:
    return [(member.value, member.value) for member in enum]


def derive_stack_name(install_id: str) -> str:
    """A fresh stack name: ``lab-<install_id>-<16 random hex>``, no personal data.

    Random rather than a hash of the learner: a hash of a small id space can be
    reversed, and the cloud operator should learn nothing about who the learner is.
    """
    name = f"lab-{install_id}-{secrets.token_hex(8)}"
    assert len(name) <= STACK_NAME_MAX
    return name


class Protocol(models.TextChoices):
    SSH = "ssh", "SSH"
    RDP = "rdp", "RDP"
    VNC = "vnc", "VNC"


class Blueprint(models.Model):
    """What to build for a lab: providers in order with their templates, user, protocol.

    Stored once per distinct content (keyed by its digest) and shared by every
    learner's row: a course's template is copied once, not 100,000 times.
    """

    digest = models.CharField(max_length=64, unique=True)
    spec = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"blueprint {self.digest[:12]}"


class Lease(models.Model):
    """A short lease on one piece of work (``observe:<provider>``, ``audit:<provider>``, a lab's outputs
    ``outputs:<lab id>``): at most one is in flight; a lost one is taken over once ``until`` passes.
    ``until`` is also the holder's token: only it releases the lease."""

    key = models.CharField(max_length=128, primary_key=True)
    until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key} until {self.until}"


class ProviderLock(models.Model):
    """One row per provider, locked while a launch counts that provider's stacks against capacity.

    It also holds the operator's drain flag, which placement reads from the very rows it locks.
    """

    name = models.CharField(max_length=64, primary_key=True)
    draining = models.BooleanField(default=False, help_text="No new launches are placed here.")
    drain_moves = models.BooleanField(
        default=False, help_text="While draining, labs here are rebuilt elsewhere at their next launch."
    )
    draining_since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class Lab(models.Model):
    """One learner's lab: what should be (``desired``) and what is (``state``)."""

    # CASCADE, not PROTECT: deleting a user must not be blocked by a lab, and a
    # stack left behind by a deleted row carries our tag and matches no live row,
    # so the reaper deletes it after orphan_grace_seconds. Nothing leaks for long,
    # and the row's encrypted secrets go with the user.
    # Null for a warm pool's stack (``pool`` set) until a learner's first launch claims it.
    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="labs"
    )
    # SET_NULL: a stack of a pool that was removed has neither learner nor pool, and is deleted
    # by labs.pools at its next pass (never left running unowned).
    pool = models.ForeignKey(
        "labxblock.WarmPool", on_delete=models.SET_NULL, null=True, blank=True, related_name="stacks",
        help_text="The warm pool this unassigned stack belongs to; empty once a learner has it.",
    )
    course_run = models.CharField(max_length=255, help_text="Course run key, e.g. course-v1:Org+Course+Run.")
    lab_key = models.CharField(
        max_length=255, help_text="Which lab of the course run (template or lab_group)."
    )
    stack_name = models.CharField(max_length=STACK_NAME_MAX, unique=True, editable=False)
    provider = models.CharField(max_length=64, blank=True, help_text="Provider name; empty until placed.")
    blueprint = models.ForeignKey(Blueprint, on_delete=models.PROTECT, null=True, related_name="labs")
    tried_providers = models.JSONField(
        default=list, blank=True, help_text="Providers that refused this launch (quota, failed create)."
    )
    provider_state = models.JSONField(default=dict, blank=True, help_text="The provider's own small state.")

    desired = models.CharField(max_length=16, choices=_choices(Desired), default=Desired.UP.value)
    state = models.CharField(max_length=16, choices=_choices(State), default=State.REQUESTED.value)
    raw_status = models.CharField(max_length=64, blank=True, help_text="The cloud's own status word.")
    raw_reason = models.TextField(blank=True, help_text="The cloud's own explanation of that status.")
    status_reason = models.TextField(blank=True)

    outputs = models.JSONField(default=dict, blank=True, help_text="Non-secret stack outputs only.")
    ip = models.CharField(max_length=255, blank=True, help_text="Public address (IP or host name).")
    stack_user = models.CharField(max_length=64, blank=True)
    protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.SSH)
    port = models.PositiveIntegerField(null=True, blank=True, help_text="Null: the protocol's default.")
    private_key = EncryptedTextField(blank=True, default="")
    password = EncryptedTextField(blank=True, default="")
    secret_outputs = EncryptedTextField(
        blank=True, default="", help_text="The other secret outputs (setting secret_outputs), as JSON."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    delete_by = models.DateTimeField(null=True, blank=True, help_text="Deleted for disuse after this.")
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="Deadline of the current state.")
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts at the current transition.")
    state_changed_at = models.DateTimeField(null=True, blank=True, help_text="When the current state began.")
    idle_at = models.DateTimeField(
        null=True, blank=True, help_text="Suspended for idleness after this (last seen + suspend timeout)."
    )
    probe_ok = models.BooleanField(default=False, help_text="The lab answered on its port in this state.")
    launch_requested_at = models.DateTimeField(null=True, blank=True)
    launch_seconds = models.FloatField(
        null=True, blank=True, help_text="Request to ready, last launch: feeds learners' estimates."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Backoff: not before this.")
    call_issued_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the last cloud call was issued, or its worker started or retried it.",
    )
    call_accepted_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When that call was seen taken: its worker's answer, the cloud at work, or a move on.",
    )
    reissues = models.PositiveIntegerField(
        default=0, help_text="Calls made again over the lab's life (lost, failed or timed out); never reset."
    )
    # Time budget (labs.budgets): counted from the event log as it is written, so nothing recounts it.
    used_seconds = models.FloatField(
        default=0.0, help_text="Up-time of the lab's past up periods, from its event log (resets included)."
    )
    up_since = models.DateTimeField(
        null=True, blank=True, help_text="When the current up period (create or resume) began; empty if down."
    )
    budget_limits = models.JSONField(
        default=dict, blank=True,
        help_text="Time budget in seconds of each block opening this lab (by usage id); the smallest counts.",
    )
    budget_granted_seconds = models.FloatField(
        default=0.0, help_text="Lab time granted by course staff or operators on top of the budget."
    )
    budget_ends_at = models.DateTimeField(
        null=True, blank=True, help_text="While up with a budget: when the budget runs out."
    )
    budget_warned_at = models.DateTimeField(
        null=True, blank=True, help_text="When the learner was warned that most of the budget is used."
    )
    # Launch ahead (labs.ahead): the learner is not there yet, so the time budget waits for them.
    awaiting_learner = models.BooleanField(
        default=False,
        help_text="Started ahead by a hidden block: the time budget counts from the learner's arrival.",
    )
    # Lifecycle scripts (labs.hooks): how long each kind may take, copied from the blueprint at launch so
    # that a pass decides without reading it; when the running ones are waited for until.
    hook_seconds = models.JSONField(
        default=dict, blank=True, help_text="Longest run of each kind of lifecycle script, in seconds."
    )
    hook_until = models.DateTimeField(
        null=True, blank=True, help_text="Lifecycle scripts are running: the lab waits for them until then."
    )
    setup_done_at = models.DateTimeField(
        null=True, blank=True, help_text="When this stack's setup scripts ran; a new stack runs them again."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["learner", "course_run", "lab_key"], name="labxblock_lab_identity"
            ),
        ]
        # Plain composite indexes (MariaDB has no partial indexes), one per periodic query and no
        # more: every state change rewrites each index holding ``state``, so there is one.
        indexes = [
            models.Index(fields=["desired", "idle_at"], name="labxblock_lab_idle_at"),  # suspend-idle tick
            models.Index(fields=["delete_by"], name="labxblock_lab_delete_by"),  # reaper
            # The reconciler's unsettled rows, and capacity counts (provider, state).
            models.Index(fields=["provider", "state", "desired"], name="labxblock_lab_reconcile"),
            models.Index(fields=["course_run", "lab_key"], name="labxblock_lab_estimate"),  # estimates
            models.Index(fields=["desired", "budget_ends_at"], name="labxblock_lab_budget"),  # budgets' pass
        ]

    def __str__(self) -> str:
        return f"{self.stack_name} ({self.state} → {self.desired})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Stable once set: a stack is found again in the cloud by this name.
        if not self.stack_name:
            from labxblock.conf import get_settings

            self.stack_name = derive_stack_name(get_settings().install_id)
        super().save(*args, **kwargs)

    def other_secrets(self) -> dict[str, Secret]:
        """The secret outputs besides private_key and password, by name (decrypted on read)."""
        text = self.secret_outputs
        return {name: hide(str(value)) for name, value in json.loads(text).items()} if text else {}

    def secret_output(self, name: str) -> str:
        """The value of the secret output ``name``; "" if the template gave none."""
        if name in ("private_key", "password"):
            return getattr(self, name)
        return self.other_secrets().get(name, "")

    def known_secrets(self) -> list[str]:
        """This lab's secret values, for scrubbing text; [] if they cannot be decrypted."""
        try:
            return [s for s in (self.private_key, self.password, *self.other_secrets().values()) if s]
        except SecretUnavailable:
            return []

    def scrub(self, text: str) -> str:
        """``text`` (a cloud's or a worker's words) without this lab's secrets or any private key."""
        return scrub(text, self.known_secrets())


def scrub(text: str, known: list[str]) -> str:
    """``text`` without any of the ``known`` secrets or any PEM private key."""
    for value in sorted(known, key=len, reverse=True):
        text = text.replace(value, REDACTED)
        # A key is often quoted line by line, or with \n escaped.
        for line in value.splitlines():
            if len(line.strip()) >= 16:
                text = text.replace(line.strip(), REDACTED)
    return _PEM_RE.sub(REDACTED, text)


def scrubbed(lab_id: int, text: str) -> str:
    """``text`` scrubbed of lab ``lab_id``'s secrets, for a reason written without the row at hand."""
    lab = Lab.objects.filter(pk=lab_id).only("pk", *SECRET_FIELDS).first()
    return lab.scrub(text) if lab is not None else scrub(text, [])


def reencrypt_secrets(batch_size: int = 500) -> int:
    """Re-encrypt every stored secret with the newest key; return the rows rewritten.

    Run after putting a new key first in ``secret_keys`` and before removing the
    old one. A token no key decrypts raises SecretUnavailable naming the lab.
    Secret outputs that an older version (or a wider ``secret_outputs``) left in
    the plain ``outputs`` are moved into the encrypted column on the way.
    """
    from labxblock.conf import get_settings

    is_secret = get_settings().is_secret_output
    count = 0
    rows = Lab.objects.values_list("pk", "outputs", *SECRET_FIELDS)
    for pk, outputs, *tokens in rows.iterator(chunk_size=batch_size):
        changes: dict[str, Any] = {
            name: reseal(token, what=f"Lab.{name} (id {pk})")
            for name, token in zip(SECRET_FIELDS, tokens, strict=True) if token
        }
        exposed = {k: v for k, v in (outputs or {}).items() if is_secret(k)}
        if exposed:
            sealed = tokens[SECRET_FIELDS.index("secret_outputs")]
            others = json.loads(unseal(sealed, what=f"Lab.secret_outputs (id {pk})")) if sealed else {}
            changes["secret_outputs"] = json.dumps({**others, **{k: str(v) for k, v in exposed.items()}})
            changes["outputs"] = {k: v for k, v in outputs.items() if k not in exposed}
        if changes:
            Lab.objects.filter(pk=pk).update(**changes)
            count += 1
    return count


class LabEventQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("LabEvent is append-only")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[LabEvent]:
        created = super().bulk_create(objs, *args, **kwargs)
        _published(created)
        return created


# Sent for every LabEvent written (``events``), inside the transaction that writes them, and every check
# run scored (``run``): the analytics and the time budgets' counter (labs.budgets, which stays the event
# log's own sum) listen, connected in apps.ready, so the models know nothing above them.
lab_events_saved = Signal()
check_run_scored = Signal()


def _published(events: list[LabEvent]) -> None:
    """Every event written goes by here (single saves and bulk inserts alike)."""
    lab_events_saved.send(sender=LabEvent, events=events)


class LabEvent(models.Model):
    """One transition or decision about a lab. Append-only; never holds a secret.

    Events outlive their lab (SET_NULL) because usage accounting is computed
    from them; the identifying columns are copied so they still mean something.
    The learner link goes when the user is deleted; accounting per course survives.
    """

    lab = models.ForeignKey(Lab, on_delete=models.SET_NULL, null=True, related_name="events")
    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    stack_name = models.CharField(max_length=STACK_NAME_MAX)
    course_run = models.CharField(max_length=255)
    lab_key = models.CharField(max_length=255)
    provider = models.CharField(max_length=64)
    at = models.DateTimeField()
    from_state = models.CharField(max_length=16, choices=_choices(State), blank=True)
    to_state = models.CharField(max_length=16, choices=_choices(State))
    desired = models.CharField(max_length=16, choices=_choices(Desired))
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=64, help_text='"learner:<id>", "staff:<id>", "reconciler", …')
    attempt = models.PositiveIntegerField(
        null=True, blank=True, help_text="Failures counted in the transition so far (the engine's events)."
    )
    pool = models.BooleanField(
        default=False, help_text="An event of a warm pool's stack before any learner had it (pool time)."
    )

    objects = LabEventQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["lab", "at"], name="labxblock_event_lab_at"),
            models.Index(fields=["at"], name="labxblock_event_at"),  # accounting by period
        ]
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.stack_name} {self.from_state}→{self.to_state} by {self.actor}"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("LabEvent is append-only: an existing event cannot be changed")
        super().save(*args, **kwargs)
        _published([self])

    @classmethod
    def build(
        cls, lab: Lab, *, actor: str, reason: str, from_state: str, to_state: str, at: datetime,
        attempt: int | None = None,
    ) -> LabEvent:
        """An unsaved event for bulk insertion. ``reason`` must be one of our own fixed words
        (a lifecycle Reason): it is not scrubbed. Text from a cloud goes through ``record``."""
        return cls(
            lab=lab, learner_id=lab.learner_id, stack_name=lab.stack_name, course_run=lab.course_run,
            lab_key=lab.lab_key, provider=lab.provider, at=at, from_state=from_state, to_state=to_state,
            desired=str(lab.desired), reason=reason, actor=actor, attempt=attempt,
            pool=lab.learner_id is None,
        )

    @classmethod
    def record(
        cls,
        lab: Lab,
        *,
        actor: str,
        reason: str = "",
        from_state: str | None = None,
        to_state: str | None = None,
        at: datetime | None = None,
    ) -> LabEvent:
        """Append an event for ``lab``; states default to ``lab.state`` (a decision, not a move).

        ``reason`` is scrubbed of the lab's own secrets and of any PEM private key,
        so a cloud error quoting a password cannot land in the log table.
        """
        return cls.objects.create(
            lab=lab,
            learner_id=lab.learner_id,
            stack_name=lab.stack_name,
            course_run=lab.course_run,
            lab_key=lab.lab_key,
            provider=lab.provider,
            at=at or timezone.now(),
            from_state=str(from_state if from_state is not None else lab.state),
            to_state=str(to_state if to_state is not None else lab.state),
            desired=str(lab.desired),
            reason=scrub(reason, lab.known_secrets()),
            actor=actor,
            pool=lab.learner_id is None,
        )


from labxblock.models_pool import WarmPool  # noqa: E402 - a model of its own module, registered here

__all__ = [
    "Blueprint",
    "Lab",
    "LabEvent",
    "Lease",
    "Protocol",
    "ProviderLock",
    "Sealed",
    "WarmPool",
    "check_run_scored",
    "derive_stack_name",
    "lab_events_saved",
    "reencrypt_secrets",
    "scrub",
    "scrubbed",
]


class CheckRun(models.Model):
    """One press of a block's check button: what ran, which checks passed, the score. No secrets.

    At most one run per learner and block is ``running``: ``labs.checking`` starts runs
    while holding the lab's row lock. A running run past ``deadline_at`` was lost (broker
    down, worker killed) and is closed as failed the next time anyone looks.
    """

    class State(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"  # the checks ran; ``score`` is set
        FAILED = "failed", "failed"  # nothing was scored; ``reason`` says why

    lab = models.ForeignKey(Lab, on_delete=models.SET_NULL, null=True, blank=True, related_name="check_runs")
    learner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    course_run = models.CharField(max_length=255)
    usage_id = models.CharField(max_length=255, help_text="The block whose checks ran (and is graded).")
    lab_key = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    reason = models.CharField(max_length=32, blank=True, help_text="Why a failed run was not scored.")
    checks = models.JSONField(default=list, help_text="The checks as they ran (author content).")
    results = models.JSONField(default=list, blank=True, help_text="Per check: passed, hint, output tails.")
    score = models.FloatField(null=True, blank=True, help_text="Weighted share of passed checks, 0..1.")
    weight = models.FloatField(null=True, blank=True, default=1.0,
                               help_text="The block's weight when the run started: its points at full marks.")
    actor = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    deadline_at = models.DateTimeField(help_text="A run still running after this was lost.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["learner", "usage_id", "started_at"], name="labxblock_checkrun_block"),
        ]

    def __str__(self) -> str:
        return f"check run {self.pk} of {self.usage_id} ({self.state})"
