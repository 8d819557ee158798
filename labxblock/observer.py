"""What an observation and an audit ask the cloud (for ``tasks.observe`` and ``tasks.audit``).

The database side (which labs to look at, their stamps, applying what was seen) is
``labs.observe``; this module makes the calls: a provider's list of stacks in progress or
its full list, and reads of single stacks, a few side by side. A cloud that cannot be
read costs nothing but a log line: the next observation asks again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.utils import timezone

from labxblock import clouds
from labxblock.labs import jobs, observe, periodic
from labxblock.labs.engine import Observation
from labxblock.providers.base import Provider, ProviderError, StackInfo

log = logging.getLogger(__name__)
READ_THREADS = 8  # an observation's reads of single stacks, side by side


def observe_provider(name: str, until: datetime | None = None) -> int:
    """One provider's labs in flight: its list of stacks in progress, a read of each in-flight stack that
    list does not show (and of any stack in progress no lab in flight expected), applied to the rows
    that have not moved since they were stamped. Returns the jobs it started.

    ``until``: the end of the observation's lease; no read starts after it (the next observation
    reads the rest), so one cannot outlast its lease by more than a request's own timeout.
    """
    targets = observe.targets(name, timezone.now())  # stamped before the cloud is asked
    if not any(t.read for t in targets) or name not in clouds.providers():
        # Nothing in flight, or every lab waits for its own call's answer (a create request takes a loaded
        # Heat 20 s): the list would show nothing their workers will not tell, and costs the cloud a
        # query while it works on those very calls. From UNREAD_SHARE of the window on they are read.
        return 0
    provider = clouds.provider(name)
    with provider.within(_left(until)):
        busy = _listed(name, provider.list_busy)
    if busy is None:
        return 0
    found = {t: busy[t.stack_name] for t in targets if t.stack_name in busy}
    expected = {t.stack_name for t in targets}
    reads = [t for t in targets if t not in found and t.read]
    reads += observe.suspects(name, [stack for stack in busy if stack not in expected])
    found.update(_read(provider, reads, until))
    seen = {target: _observation(provider, info) for target, info in found.items()}
    return len(observe.apply(name, seen, timezone.now()))


def audit(name: str, until: datetime | None = None) -> int:
    """One provider's full list: labs at rest it contradicts are read and put right, orphan stacks
    deleted. Returns the jobs it started. No read starts after ``until`` (the audit's lease)."""
    if name not in clouds.providers():
        return 0
    provider = clouds.provider(name)
    with provider.within(_left(until)):
        infos = _listed(name, provider.list)
    if infos is None:
        return 0
    suspects = observe.audit_suspects(name, {stack: info.state for stack, info in infos.items()})
    seen = {target: _observation(provider, info) for target, info in _read(provider, suspects, until).items()}
    count = len(observe.apply(name, seen, timezone.now(), actor="auditor"))
    listed = [periodic.ListedStack(stack, info.created_at, info.state) for stack, info in infos.items()]
    now = timezone.now()
    orphans = periodic.orphans(name, listed, now)
    states = {stack: provider.get_state(infos[stack].ref) for stack in orphans}
    return count + periodic.delete_orphans(name, states, observe.rate_budget(name, now))


def _left(until: datetime | None) -> float | None:
    """Seconds left until ``until`` (the lease's end), or None for no bound."""
    return None if until is None else (until - timezone.now()).total_seconds()


def _observation(provider: Provider, info: StackInfo) -> Observation:
    return Observation(info.state, info.raw_status, info.reason, provider.get_state(info.ref))


def _listed(name: str, listing: Callable[[str], list[StackInfo]]) -> dict[str, StackInfo] | None:
    """One of the provider's lists of our stacks by name, or None if the cloud could not be read."""
    try:
        return {info.ref.name: info for info in listing(jobs.install_tag())}
    except ProviderError as exc:
        log.warning("labxblock: cannot list stacks on provider %s, trying again later: %s", name, exc)
        return None


def _read(
    provider: Provider, targets: list[observe.Target], until: datetime | None = None
) -> dict[observe.Target, StackInfo]:
    """Read each target's stack (a few side by side); one the cloud does not answer is skipped, and so is
    every one not started by ``until`` (left for the next pass)."""
    late: list[str] = []

    def read(target: observe.Target) -> StackInfo | None:
        left = _left(until)
        if left is not None and left <= 0:
            late.append(target.stack_name)
            return None
        try:
            with provider.within(left):
                return provider.status(provider.load_state(target.stack_name, target.provider_state))
        except ProviderError as exc:
            log.info("labxblock: cannot read stack %s now: %s", target.stack_name, exc)
            return None

    if not targets:
        return {}
    with ThreadPoolExecutor(min(READ_THREADS, len(targets)), thread_name_prefix="labxblock-read") as pool:
        infos = list(pool.map(read, targets))
    if late:
        log.info("labxblock: %d stack read(s) left for the next pass: the lease's time was spent", len(late))
    return {target: info for target, info in zip(targets, infos, strict=True) if info is not None}
