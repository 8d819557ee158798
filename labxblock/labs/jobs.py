"""A worker's job on one lab: claim it (is it still wanted?) and record what the call did.

The worker (tasks.py) makes the one provider call between ``claim`` and a
``record_*``; these functions never call a cloud and never wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from labxblock.conf import get_settings
from labxblock.labs import engine, placement
from labxblock.labs.specs import DEFAULT_PORTS
from labxblock.lifecycle import Action, Reason, State, check_transition
from labxblock.models import Lab, LabEvent

SECRET_OUTPUTS = ("private_key", "password")


@dataclass(frozen=True)
class Claim:
    """What a worker needs to carry out a job: names and text, no row."""

    job: engine.Job
    provider: str
    stack_name: str
    provider_state: dict[str, Any]
    template: str = field(default="", repr=False)
    environment: str | None = field(default=None, repr=False)
    parameters: dict[str, str] = field(default_factory=dict)
    host: str = ""  # for PROBE: empty until the outputs were read
    port: int | None = None
    reboot_on_resume: bool = False  # the template asked for it, and these are a resume's outputs


def claim(job: engine.Job) -> Claim | None:
    """The job's inputs, or None if the lab has moved on (a stale or duplicate job)."""
    lab = (
        Lab.objects.filter(pk=job.lab_id).select_related("blueprint").defer("private_key", "password").first()
    )
    if lab is None or lab.state != job.state or not lab.provider:
        return None
    spec = lab.blueprint.spec if lab.blueprint_id else {}
    choice = next((c for c in spec.get("providers", []) if c["name"] == lab.provider), {})
    port = lab.port or spec.get("port") or DEFAULT_PORTS.get(lab.protocol, 22)
    return Claim(
        job=job,
        provider=lab.provider,
        stack_name=lab.stack_name,
        provider_state=dict(lab.provider_state),
        template=choice.get("template", ""),
        environment=choice.get("environment"),
        parameters=dict(spec.get("parameters", {})),
        host=lab.ip,
        port=port,
        # Outputs are already stored only when this stack ran before: this probe follows a resume.
        reboot_on_resume=str(lab.outputs.get("reboot_on_resume", "")).lower() in ("true", "1", "yes"),
    )


def install_tag() -> str:
    """The tag on every stack of this site: how list() and the orphan sweep find ours."""
    return f"labxblock-{get_settings().install_id}"


def record_created(claim: Claim, provider_state: dict[str, Any]) -> None:
    """The cloud accepted the create: remember how to find the stack."""
    Lab.objects.filter(pk=claim.job.lab_id, state=State.CREATING).update(provider_state=provider_state)


def record_outputs(claim: Claim, outputs: dict[str, Any], raw_status: str = "") -> bool:
    """Store a ready stack's outputs: secrets encrypted apart, the rest as plain JSON."""
    public = {k: v for k, v in outputs.items() if k not in SECRET_OUTPUTS}
    fields: dict[str, Any] = {"outputs": public, "ip": str(outputs.get("public_ip") or "")}
    for name in SECRET_OUTPUTS:
        fields[name] = str(outputs.get(name) or "")
    if str(outputs.get("port") or "").isdigit():
        fields["port"] = int(outputs["port"])
    if raw_status:
        fields["raw_status"] = raw_status[:64]
    return bool(Lab.objects.filter(pk=claim.job.lab_id, state=claim.job.state).update(**fields))


def record_probe(claim: Claim, ok: bool, now: datetime | None = None) -> engine.Job | None:
    """Store the probe's answer; a lab that answered becomes READY at once, not a pass later."""
    now = now or timezone.now()
    if not ok:
        return None
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=claim.job.lab_id, state=claim.job.state).first()
        if lab is None:
            return None
        Lab.objects.filter(pk=lab.pk).update(probe_ok=True)
        lab.probe_ok = True
        job = engine.apply(lab, engine.believed(lab), now, "prober")
        engine.dispatch([job] if job else [])
    return job


def record_refused(claim: Claim, message: str, now: datetime | None = None) -> engine.Job | None:
    """The provider refused the create (quota, bad template…): try the next one, or fail visibly."""
    now = now or timezone.now()
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=claim.job.lab_id, state=State.CREATING).first()
        if lab is None:
            return None
        tried = [*lab.tried_providers, claim.provider]
        check_transition(State.CREATING, State.REQUESTED)
        Lab.objects.filter(pk=lab.pk).update(
            state=State.REQUESTED.value,
            provider="",
            provider_state={},
            tried_providers=tried,
            status_reason=message[:2000],
            state_changed_at=now,
            attempts=0,
            next_attempt_at=None,
        )
        LabEvent.record(
            lab,
            actor="worker",
            reason=f"{claim.provider} refused: {message}",
            to_state=State.REQUESTED.value,
            at=now,
        )
        lab.refresh_from_db()
        if not placement.candidates(lab):
            _fail(lab, Reason.CREATE_FAILED, message, now)
            return None
    return engine.step(claim.job.lab_id, now, "worker")


def _fail(lab: Lab, reason: Reason, message: str, now: datetime) -> None:
    check_transition(State(lab.state), State.FAILED)
    Lab.objects.filter(pk=lab.pk).update(
        state=State.FAILED.value,
        status_reason=f"{reason.value}: {message}"[:2000],
        state_changed_at=now,
        deadline_at=None,
        next_attempt_at=None,
    )
    LabEvent.record(
        lab, actor="worker", reason=f"{reason.value}: {message}", to_state=State.FAILED.value, at=now
    )


def record_call_failed(claim: Claim, message: str, now: datetime | None = None) -> None:
    """The call failed for good (retries spent): make the lab due, so the next pass counts it.

    The lifecycle then retries with backoff or fails the lab with a reason; a call
    that did land after all is adopted from the cloud's list.
    """
    now = now or timezone.now()
    Lab.objects.filter(pk=claim.job.lab_id, state=claim.job.state).update(
        deadline_at=now, next_attempt_at=now, status_reason=message[:2000]
    )


__all__ = [
    "Action",
    "Claim",
    "claim",
    "install_tag",
    "record_call_failed",
    "record_created",
    "record_outputs",
    "record_probe",
    "record_refused",
]
