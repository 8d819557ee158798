"""The provider interface: the one place that knows a cloud.

A provider never touches the database and never waits for the cloud: ``create``
returns once the request is accepted, ``get`` and ``list`` read what is there
now. What it needs to find a stack again is a small JSON dict
(``get_state``/``load_state``) that the caller stores. Providers import nothing
from Django or Celery.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labxblock.lifecycle import OPERATIONS, State
from labxblock.secret import hide_outputs


@dataclass(frozen=True)
class StackSpec:
    """Everything a provider needs to create one stack."""

    name: str  # derived, unique, <= 64 chars, no personal data
    template: str  # the template as text (Heat HOT for openstack)
    environment: str | None = None  # environment file as text
    parameters: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()  # the install tag goes first


@dataclass(frozen=True)
class StackRef:
    """A handle to a stack: its name and the provider's own small state."""

    name: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StackInfo:
    """What the cloud says about one stack right now, in our own words."""

    ref: StackRef
    state: State  # only CREATING, READY, SUSPENDING, SUSPENDED, RESUMING, DELETING, DELETED, FAILED
    raw_status: str = ""  # the cloud's own status word, for operators
    reason: str = ""  # the cloud's own explanation, for operators
    # Empty unless complete. Holds the lab's keys and passwords: never in a repr, and each secret
    # one (by the default rule: providers know no settings) a Secret wherever it goes from here.
    outputs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None  # when the cloud created it (aware); the orphan sweep's clock

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", hide_outputs(self.outputs))


@dataclass(frozen=True)
class CheckReport:
    """A provider's answer to an operator's check: can we work there, and what it found."""

    ok: bool
    details: tuple[str, ...] = ()  # one line each: who we are there, what was listed, the quota


@dataclass(frozen=True)
class TemplateProblem:
    """One thing the cloud finds wrong with a template, in its own words (never a credential)."""

    message: str
    line: int | None = None  # 1-based line of the template the message names, when known
    column: int | None = None


class ProviderError(Exception):
    """Base of every error a provider raises; ``str()`` is safe to log."""


class NotFound(ProviderError):
    """The stack does not exist (any more)."""


class QuotaExceeded(ProviderError):
    """The cloud refused for lack of quota; another provider may have room."""


class TemporaryError(ProviderError):
    """Worth retrying after ``delay`` seconds (5xx, timeouts, rate limits)."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class NoAnswer(TemporaryError):
    """The request went out but no answer came back in time: the cloud may well be carrying it out."""


class PermanentError(ProviderError):
    """Retrying the same call will not help (bad template, auth refused…)."""


class ValidationUnsupported(ProviderError):
    """This provider cannot check a template without creating a stack."""


class Provider(abc.ABC):
    """One configured cloud. Instances are cheap; build one per process."""

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = config

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Return (sub-key, what is expected) for each problem in ``config``."""
        return []

    @abc.abstractmethod
    def create(self, spec: StackSpec) -> StackRef:
        """Ask the cloud for a stack; return once the request is accepted."""

    @abc.abstractmethod
    def get(self, ref: StackRef) -> StackInfo:
        """Read one stack now; a missing stack is reported as DELETED."""

    @abc.abstractmethod
    def list(self, tag: str) -> list[StackInfo]:
        """Every stack carrying ``tag`` (the slow audit: it may take a request per page)."""

    def status(self, ref: StackRef) -> StackInfo:
        """:meth:`get` without the outputs, where the cloud makes that cheaper. Default: ``get``."""
        return self.get(ref)

    def list_busy(self, tag: str) -> list[StackInfo]:
        """The stacks carrying ``tag`` the cloud is working on, at a cost that grows with their number
        only. Default: :meth:`list`, filtered; a cloud that can filter by status should."""
        return [info for info in self.list(tag) if info.state in OPERATIONS]

    @abc.abstractmethod
    def suspend(self, ref: StackRef) -> None:
        """Ask the cloud to suspend; return once accepted."""

    @abc.abstractmethod
    def resume(self, ref: StackRef) -> None:
        """Ask the cloud to resume; return once accepted."""

    @abc.abstractmethod
    def delete(self, ref: StackRef) -> None:
        """Ask the cloud to delete; a stack that is already gone counts as done."""

    def validate(
        self, template: str, environment: str | None = None, given: Collection[str] = ()
    ) -> list[TemplateProblem]:
        """Check ``template`` as a create would, creating nothing; [] when the cloud accepts it.

        ``given``: the parameters the caller passes at create (a parameter with no default
        and no value is a problem). Optional: the default raises ValidationUnsupported.
        TemporaryError when the cloud cannot be asked now; the caller bounds the time.
        """
        raise ValidationUnsupported(f"{self.name}: template validation is not supported")

    def add_tags(self, ref: StackRef, tags: tuple[str, ...]) -> bool:
        """Tag a stack made without ``tags`` (adopted from another system), its resources untouched;
        returns once accepted. False (the default): this cloud cannot tag a stack once made."""
        return False

    def within(self, seconds: float | None) -> contextlib.AbstractContextManager[None]:
        """Give the calls this thread makes inside the block no more than ``seconds`` from now (None: no
        bound beyond the provider's own timeouts); one that runs out raises TemporaryError. Default: a
        provider whose calls are all quick has nothing to bound."""
        return contextlib.nullcontext()

    def after_resume(self, ref: StackRef) -> None:
        """Called once when the caller sees a resume complete; a few calls at most.

        For work a cloud cannot do within the resume (openstack: reboot the servers
        when the template outputs ``reboot_on_resume``). Default: nothing.
        """
        return None

    def check(self, tag: str) -> CheckReport:
        """For the operator's ``labxblock check``: authenticate, list ``tag``'s stacks, report quota.

        A few calls, never a change. Default: one list. Errors are reported, not raised.
        """
        try:
            stacks = self.list(tag)
        except ProviderError as exc:
            return CheckReport(False, (f"list: {exc}",))
        return CheckReport(True, (f"list: {len(stacks)} stack(s) tagged {tag}",))

    def describe(self) -> str:
        """Where this provider's stacks live, in a line for an operator (no secret). Default: its type."""
        return f"{type(self).__name__} {self.name}"

    def get_state(self, ref: StackRef) -> dict[str, Any]:
        """The JSON-able dict the caller stores to find the stack again."""
        return dict(ref.data)

    def load_state(self, name: str, state: Mapping[str, Any]) -> StackRef:
        """Rebuild a handle from what ``get_state`` returned."""
        return StackRef(name=name, data=dict(state))
