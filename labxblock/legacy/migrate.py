"""The old package's learner stacks on a running site: which are still alive, and adopting or deleting them.

Each row of the old table is looked for in the cloud by its stack name, on its own provider
only: labxblock's provider of the name the row gives, or the one the operator names for it
(``--provider OLD=NAME``). A stack of that name anywhere else is someone else's, and so is one
created before the row was made or after its last launch (``CLOCK_SKEW`` allowed): the old
table keeps no stack id. A stack that is ready or suspended can be adopted
(``labs.adoption``: the learner keeps their lab, under the lab group converted blocks use) or
deleted; nothing changes without ``adopt`` or ``delete``, and a stack a labxblock lab uses is
never deleted. An adopted stack is tagged with the site's install tag, so the provider's lists
show it like any lab's (a stack the cloud will not tag now, such as a suspended one on Heat, is
tagged by a later run). Run it again at will: what is done is not done twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from labxblock.labs import adoption
from labxblock.labs.jobs import install_tag
from labxblock.legacy.convert import LEGACY_LAB_GROUP
from labxblock.legacy.stacks import OldStack
from labxblock.lifecycle import State
from labxblock.providers.base import Provider, ProviderError, StackInfo, StackRef

MOVING = {State.CREATING, State.SUSPENDING, State.RESUMING}
ADOPT, DELETE = "adopt", "delete"
CLOCK_SKEW = timedelta(minutes=10)  # between the site's clock (the old row's times) and the cloud's


@dataclass
class Finding:
    """One old row and what the cloud says of its stack."""

    old: OldStack
    provider: str = ""
    info: StackInfo | None = field(default=None, repr=False)  # its outputs may hold secrets
    problem: str = ""  # its provider could not be asked
    mismatch: str = ""  # why the stack of that name is not the old row's
    outcome: str = ""

    @property
    def cloud(self) -> str:
        if self.info is not None:
            return f"{self.info.state.value} on {self.provider}"
        return "unknown" if self.problem else "gone"

    @property
    def alive(self) -> bool:
        return self.info is not None and not self.mismatch and self.info.state in adoption.ADOPTABLE


def provider_of(old: OldStack, providers: Mapping[str, Provider], names: Mapping[str, str]) -> str | None:
    """The provider here that is the old row's own: ``names`` maps the old name to ours, else the same."""
    name = names.get(old.provider, old.provider)
    return name if name in providers else None


def locate(old: OldStack, providers: Mapping[str, Provider],
           names: Mapping[str, str] | None = None) -> Finding:
    """Ask the row's own provider (:func:`provider_of`) for its stack by name; check it is the row's."""
    name = provider_of(old, providers, names or {})
    if name is None:
        return Finding(old, problem=f"its provider {old.provider or '(none)'} is not one of this site's: "
                                    f"name ours with --provider {old.provider}=NAME")
    try:
        info = providers[name].get(StackRef(old.name))
    except ProviderError as exc:
        return Finding(old, name, problem=f"{name}: {exc}")
    if info.state is State.DELETED:
        return Finding(old, name)
    return Finding(old, name, info, mismatch=mismatch(old, info.created_at))


def mismatch(old: OldStack, created_at: datetime | None) -> str:
    """Why a stack created at ``created_at`` cannot be the old row's; "" when it may be (or is unknown)."""
    if created_at is None:
        return ""
    made = f"the stack of that name was created at {created_at:%Y-%m-%d %H:%M} UTC"
    if old.created_on is not None and created_at < old.created_on - CLOCK_SKEW:
        return f"{made}, before the old row ({old.created_on:%Y-%m-%d %H:%M}): not its stack"
    if old.launch_timestamp is not None and created_at > old.launch_timestamp + CLOCK_SKEW:
        launched = f"{old.launch_timestamp:%Y-%m-%d %H:%M}"
        return f"{made}, after the old row's last launch ({launched}): not its stack"
    return ""


def where(findings: list[Finding], providers: Mapping[str, Provider]) -> list[str]:
    """One line for each provider asked: the project (or place) its stacks were looked for in."""
    asked = sorted({f.provider for f in findings if f.provider})
    return [f"Provider {name}: {providers[name].describe()}" for name in asked]


def plan(finding: Finding, mode: str, owned: set[str]) -> str:
    """What ``mode`` does with this stack ("adopt" or "delete"), or why it leaves it alone."""
    info = finding.info
    if info is None:
        return f"nothing: could not ask ({finding.problem})" if finding.problem else "nothing: gone"
    if finding.mismatch:
        return f"left alone: {finding.mismatch}"
    if info.state is State.DELETING:
        return "nothing: being deleted"
    if mode == DELETE:
        return "left alone: a labxblock lab uses it" if finding.old.name in owned else DELETE
    if info.state in MOVING:
        return "left alone: in motion, run again when it settles"
    if info.state is State.FAILED:
        return "left alone: failed in the cloud (--delete removes it)"
    if finding.old.learner_id is None:
        return "left alone: the old row names no learner (--delete removes it)"
    return ADOPT


def stray(finding: Finding, provider: Provider) -> adoption.Stray:
    old, info = finding.old, finding.info
    assert info is not None and old.learner_id is not None
    return adoption.Stray(
        stack_name=old.name, learner_id=old.learner_id, course_run=old.course_id, lab_key=LEGACY_LAB_GROUP,
        provider=finding.provider, provider_state=provider.get_state(info.ref), state=info.state,
        raw_status=info.raw_status, outputs=dict(info.outputs),
        fallback={"ip": old.ip, "private_key": old.key, "password": old.password},
        stack_user=old.user, protocol=old.protocol, port=old.port, launched_at=old.launch_timestamp,
        suspended_at=old.suspend_timestamp, delete_by=old.delete_by, origin=f"{old.table} id {old.id}",
    )


def carry_out(findings: list[Finding], mode: str | None, providers: Mapping[str, Provider],
              now: datetime) -> None:
    """Set each finding's outcome: what was done (``mode``), or what ``adopt`` would do (None)."""
    owned = adoption.owned([f.old.name for f in findings])
    for finding in findings:
        step = plan(finding, mode or ADOPT, owned)
        if step not in (ADOPT, DELETE):
            finding.outcome = step
        elif mode is None and step == ADOPT:
            finding.outcome = _preview(finding, providers[finding.provider])
        elif mode is None:
            finding.outcome = f"would {step}"
        elif step == ADOPT:
            finding.outcome = adoption.adopt(stray(finding, providers[finding.provider]), now)
            if finding.outcome in ("adopted", adoption.ALREADY) and adoption.still_untagged(finding.old.name):
                finding.outcome += f"; {_tag(finding, providers[finding.provider])}"
        else:
            finding.outcome = _delete(finding, providers[finding.provider])


def _preview(finding: Finding, provider: Provider) -> str:
    reason = adoption.obstacle(stray(finding, provider))
    if reason is None:
        return "would adopt"
    return reason if reason == adoption.ALREADY else f"would not adopt: {reason}"


def _tag(finding: Finding, provider: Provider) -> str:
    """Give the adopted stack the site's install tag: then the lists show it, not one read per audit."""
    assert finding.info is not None
    try:
        done = provider.add_tags(finding.info.ref, (install_tag(),))
    except ProviderError as exc:
        return f"not tagged now: {exc}"
    return "tagged" if done else "not tagged: the provider cannot tag a stack once made"


def _delete(finding: Finding, provider: Provider) -> str:
    assert finding.info is not None
    try:
        provider.delete(finding.info.ref)
    except ProviderError as exc:
        return f"not deleted: {exc}"
    return "deletion requested"


def summary(findings: list[Finding], mode: str | None) -> list[str]:
    """The closing lines: counts, and what to do next."""
    clouds = Counter(f.info.state.value if f.info else ("unknown" if f.problem else "gone") for f in findings)
    alive = sum(f.alive for f in findings)
    lines = [f"{len(findings)} old stack(s): " + ", ".join(f"{n} {s}" for s, n in sorted(clouds.items()))
             + f"; {alive} alive (ready or suspended)."]
    if mode is None:
        adoptable = sum(f.outcome == "would adopt" for f in findings)
        deletable = sum(plan(f, DELETE, set()) == DELETE for f in findings)
        lines.append(f"Dry run: nothing changed. --adopt makes {adoptable} stack(s) the learners' labs; "
                     f"--delete deletes the {deletable} stack(s) still in the cloud.")
    else:
        done = Counter(f.outcome for f in findings)
        lines.append("Done: " + ", ".join(f"{n} {o}" for o, n in sorted(done.items())) + ".")
    lines.append("The old table keeps keys and passwords in plain text: drop it (and its stacklog) once the "
                 "move is over. Nova key pairs the old package made (stack_key_type) are named after the "
                 "stacks and are not deleted by labxblock.")
    return lines
