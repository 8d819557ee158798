"""A worker's job on one lab: claim it (is it still wanted?) and record what the call did.

The worker (tasks.py) makes the one provider call between ``claim`` and a
``record_*``; these functions never call a cloud and never wait.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from labxblock import hostkeys
from labxblock.conf import get_settings
from labxblock.labs import addressing, calls, engine, hooks, placement
from labxblock.labs.specs import DEFAULT_PORTS
from labxblock.lifecycle import CALLS, Action, Reason, State, check_transition
from labxblock.models import SECRET_FIELDS, Lab, LabEvent, scrubbed
from labxblock.secret import hide, hide_outputs

log = logging.getLogger(__name__)

# What record_outputs made of a stack's outputs.
STORED, STALE, REFUSED = "stored", "stale", "refused"
OUTPUTS_READ = "outputs read"  # the event of stored outputs: a phase of a launch (Studio's test lab)


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
    tags: tuple[str, ...] = ()  # the blueprint's extra cloud tags (a Studio test lab's)
    host: str = ""  # for PROBE: empty until the outputs were read
    port: int | None = None
    protocol: str = "ssh"
    host_key: str = ""  # the template's, or the one recorded at this stack's first probe
    reboot_on_resume: bool = False  # the template asked for it, and these are a resume's outputs


def claim(job: engine.Job) -> Claim | None:
    """The job's inputs, or None if the lab has moved on (a stale or duplicate job)."""
    lab = (
        Lab.objects.filter(pk=job.lab_id).select_related("blueprint").defer(*SECRET_FIELDS).first()
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
        tags=tuple(spec.get("tags", ())),
        host=lab.ip,
        port=port,
        protocol=lab.protocol,
        host_key=str(lab.outputs.get("host_key") or ""),
        # Outputs are already stored only when this stack ran before: this probe follows a resume.
        reboot_on_resume=str(lab.outputs.get("reboot_on_resume", "")).lower() in ("true", "1", "yes"),
    )


def install_tag() -> str:
    """The tag on every stack of this site: how list() and the orphan sweep find ours."""
    return f"labxblock-{get_settings().install_id}"


def record_created(claim: Claim, provider_state: dict[str, Any]) -> None:
    """The cloud accepted the create: remember how to find the stack.

    A new stack has outputs of its own (address, keys, host key): the last stack's are forgotten.
    """
    Lab.objects.filter(pk=claim.job.lab_id, state=State.CREATING).update(
        provider_state=provider_state, outputs={}, ip="", private_key="", password="", secret_outputs="",
        setup_done_at=None,  # and is set up afresh
    )


def _port(output: Any, default: int | None) -> int:
    """The lab's port: the template's ``port`` output if it gave one, else the lab's own."""
    if output is None or output == "":
        return addressing.check_port(default)
    if isinstance(output, str) and output.strip().isdigit():
        output = int(output)
    return addressing.check_port(output)


@sensitive_variables("outputs", "secret", "others")
def output_fields(outputs: Mapping[str, Any], host_key: str = "") -> dict[str, Any]:
    """A stack's outputs as Lab fields: secret ones encrypted apart, the rest as plain JSON.

    A key or password the outputs lack is left out, so the one the lab has stays: a stack's
    key does not change on resume, and a stack adopted from stackamole has its key only from
    the old table (the old package made it). A new stack's row holds none (``record_created``).
    ``host_key``: this stack's, recorded when it first answered, kept when the outputs lack one.
    """
    is_secret = get_settings().is_secret_output
    outputs = hide_outputs(outputs, is_secret)  # Secrets, even as the dicts and JSON made from them
    public = {k: v for k, v in outputs.items() if not is_secret(k)}
    if "host_key" not in public and host_key:
        public["host_key"] = host_key
    secret = {k: v for k, v in outputs.items() if is_secret(k) and v not in (None, "")}
    others = {k: v for k, v in secret.items() if k not in ("private_key", "password")}
    fields: dict[str, Any] = {
        "outputs": public, "ip": str(outputs.get("public_ip") or ""),
        "secret_outputs": hide(json.dumps(others)) if others else "",
    }
    fields.update({name: secret[name] for name in ("private_key", "password") if name in secret})
    return fields


@sensitive_variables("outputs", "fields")
def record_outputs(claim: Claim, outputs: dict[str, Any], raw_status: str = "") -> str:
    """Store a ready stack's outputs (``output_fields``).

    The address and port are checked first: one the site refuses fails the lab
    (``bad_address``) and nothing is stored. A resumed stack keeps the host key recorded
    at its first probe. Returns STORED, STALE (the lab moved on) or REFUSED.
    """
    outputs = hide_outputs(outputs, get_settings().is_secret_output)  # the site's rule, from here on
    host = str(outputs.get("public_ip") or "")
    try:
        port = _port(outputs.get("port"), claim.port)
        addressing.check(claim.provider, host, port)
    except addressing.AddressRefused as exc:
        return REFUSED if record_bad_address(claim, str(exc)) else STALE
    fields = output_fields(outputs, claim.host_key)
    if outputs.get("port") not in (None, ""):
        fields["port"] = port
    if raw_status:
        fields["raw_status"] = raw_status[:64]
    stored = Lab.objects.filter(pk=claim.job.lab_id, state=claim.job.state).update(**fields)
    if not stored:
        return STALE
    lab = Lab.objects.only(*_EVENT_FIELDS).filter(pk=claim.job.lab_id).first()
    if lab is not None:  # one of our fixed words: nothing to scrub, no secret to load
        LabEvent.build(lab, actor="worker", reason=OUTPUTS_READ, from_state=lab.state, to_state=lab.state,
                       at=timezone.now()).save()
    return STORED


_EVENT_FIELDS = ("pk", "learner_id", "stack_name", "course_run", "lab_key", "provider", "state", "desired")


def record_bad_address(claim: Claim, message: str, now: datetime | None = None) -> bool:
    """The lab's address or port is one this site refuses: fail the lab, saying why to its author.

    False if the lab had moved on. ``message`` names the address and why, never a secret.
    """
    now = now or timezone.now()
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=claim.job.lab_id, state=claim.job.state).first()
        if lab is None:
            return False
        _fail(lab, Reason.BAD_ADDRESS, message, now, actor="prober")
    log.warning("labxblock: lab %s failed: %s", claim.stack_name, message)
    return True


def record_probe(
    claim: Claim, ok: bool, now: datetime | None = None, host_key: str = ""
) -> engine.Job | None:
    """Store the probe's answer; a lab that answered becomes READY at once, not a pass later.

    A lab that did not answer is made due: the next pass probes it again (one probe per lab is on
    its way at a time, see the lifecycle's ``PROBE_WINDOW``).
    ``host_key``: the key the lab showed at its first answer, when its template gave none
    (trust on first use): stored as the ``host_key`` output, which every later connection verifies.
    """
    now = now or timezone.now()
    if not ok:
        waiting = Lab.objects.filter(pk=claim.job.lab_id, state=claim.job.state, probe_ok=False)
        waiting.update(next_attempt_at=now)
        return None
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=claim.job.lab_id, state=claim.job.state).first()
        if lab is None:
            return None
        fields: dict[str, Any] = {"probe_ok": True}
        if host_key and not lab.outputs.get("host_key"):
            fields["outputs"] = {**lab.outputs, "host_key": host_key}
            LabEvent.record(lab, actor="prober", at=now,
                            reason=f"host key recorded at first answer: {hostkeys.describe(host_key)}")
        Lab.objects.filter(pk=lab.pk).update(**fields)
        for name, value in fields.items():
            setattr(lab, name, value)
        job = engine.apply(lab, engine.believed(lab), now, "prober")
        engine.dispatch([job] if job else [])
    return job


def record_scripts_done(job: hooks.HookJob, now: datetime | None = None) -> engine.Job | None:
    """A hook job's scripts ended (or could not run): the lab waits for them no more, and moves on at
    once rather than a pass later. A stack whose setup scripts ran is set up, whatever they did."""
    now = now or timezone.now()
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=job.lab_id).defer(*SECRET_FIELDS).first()
        if lab is None:
            return None
        fields: dict[str, Any] = {}
        if job.kind == "setup" and lab.setup_done_at is None and lab.state in (State.STARTING, State.READY):
            fields["setup_done_at"] = now
        waiting = lab.state == job.state and lab.hook_until == job.until
        if waiting:
            fields["hook_until"] = min(job.until, now)
        if fields:
            Lab.objects.filter(pk=lab.pk).update(**fields)
        for name, value in fields.items():
            setattr(lab, name, value)
        if not waiting:
            return None
        found = engine.apply(lab, engine.believed(lab), now, hooks.ACTOR)
        engine.dispatch([found] if found else [])
    return found


def record_refused(claim: Claim, message: str, now: datetime | None = None) -> engine.Job | None:
    """The provider refused the create (quota, bad template…): try the next one, or fail visibly."""
    now = now or timezone.now()
    with transaction.atomic():
        lab = calls.this_call(claim.job).select_for_update().filter(state=State.CREATING).first()
        if lab is None:  # moved on, or a stale copy of the create: the current call speaks for the lab
            return None
        tried = [*lab.tried_providers, claim.provider]
        check_transition(State.CREATING, State.REQUESTED)
        Lab.objects.filter(pk=lab.pk).update(
            state=State.REQUESTED.value,
            provider="",
            provider_state={},
            tried_providers=tried,
            status_reason=lab.scrub(message)[:2000],
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


def _fail(lab: Lab, reason: Reason, message: str, now: datetime, actor: str = "worker") -> None:
    check_transition(State(lab.state), State.FAILED)
    Lab.objects.filter(pk=lab.pk).update(
        state=State.FAILED.value,
        status_reason=lab.scrub(f"{reason.value}: {message}")[:2000],
        state_changed_at=now,
        deadline_at=None,
        next_attempt_at=None,
    )
    LabEvent.record(
        lab, actor=actor, reason=f"{reason.value}: {message}", to_state=State.FAILED.value, at=now
    )


def record_call_failed(claim: Claim, message: str, now: datetime | None = None) -> None:
    """The call failed for good (retries spent): make the lab due, so the next pass counts it.

    Only if it is the lab's current call: a stale copy's failure changes nothing (``calls.this_call``).

    The lifecycle then retries with backoff or fails the lab with a reason; a call
    that did land after all is adopted from the cloud's list.
    """
    now = now or timezone.now()
    fields = {"deadline_at": now, "next_attempt_at": now,
              "status_reason": scrubbed(claim.job.lab_id, message)[:2000]}
    if claim.job.action in CALLS:
        fields["call_accepted_at"] = now  # its worker's answer: the call is in flight no more
    if not calls.this_call(claim.job).update(**fields):
        calls.stale(claim.job, f"failure ({message[:200]})")


__all__ = [
    "Action",
    "Claim",
    "claim",
    "install_tag",
    "output_fields",
    "record_bad_address",
    "record_call_failed",
    "record_created",
    "record_outputs",
    "record_probe",
    "record_refused",
    "record_scripts_done",
]
