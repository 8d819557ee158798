"""Celery tasks: thin wrappers that make one provider call each and let labs record it.

No task sleeps or polls: a call returns once the cloud accepted it, and an observation
(``observe``: the provider's list of stacks in progress, and reads of the in-flight
stacks it does not show) sees the cloud's progress. The ticks only read and write the
database. Calls are idempotent; one lost with its worker or its broker is noticed when
its acceptance window runs out and issued again (the design does not rely on the
broker's redelivery); the deadlines catch what the cloud took and never finished.

Every send names its queue (``queues`` in the settings: calls, ticks, checks, observe),
retries too, so a host's router cannot move them. Observations, audits and probes have a
queue of their own: a burst of slow create calls must not hold up seeing what the cloud did.
On a site whose settings are missing or wrong each task logs why and returns: no worker or
beat is brought down.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from labxblock import checks, clouds, dbconnections, hostkeys, observer, script_runner
from labxblock.conf import LabSettings, LabSettingsError, require_settings
from labxblock.labs import (
    addressing,
    budgets,
    calls,
    checking,
    engine,
    grading,
    jobs,
    observe,
    periodic,
    pools,
)
from labxblock.labs.engine import Job
from labxblock.lifecycle import CALLS, Action, State
from labxblock.providers.base import (
    NoAnswer,
    NotFound,
    PermanentError,
    Provider,
    QuotaExceeded,
    StackRef,
    StackSpec,
    TemporaryError,
)

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 3.0
# How long a worker may hold a lab's outputs to read them (a reboot, a read: each bounded by the
# provider's read timeout); one that died holding them is taken over after this.
OUTPUTS_LEASE_SECONDS = 90
MAX_CALL_RETRIES = 4  # then the lab is made due, and the lifecycle's backoff takes over
MAX_RETRY_COUNTDOWN = 30  # short: with Redis a long countdown risks redelivery (visibility timeout)
DB_RETRY_DELAY = 5.0  # seconds before a task whose database went away tries again
# A database that went away (restarted, unreachable, a dropped connection) is a temporary error.
DATABASE_ERRORS = (OperationalError, InterfaceError)

CALL_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "soft_time_limit": 120,
    "time_limit": 150,
}
TICK_TASK_OPTIONS = {"ignore_result": True, "soft_time_limit": 240, "time_limit": 300}
# Not acknowledged late: a lost observation is replaced by the next tick once its lease runs out.
OBSERVE_TASK_OPTIONS = {"ignore_result": True, "soft_time_limit": 240, "time_limit": 300}
NOT_CONFIGURED = "not configured"


def configured(operation: str) -> LabSettings | None:
    """The settings, or None once the log says why ``operation`` cannot run without them."""
    try:
        return require_settings(operation)
    except LabSettingsError:
        return None


def probe(address: str, port: int, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Does the lab accept a connection on its port? (Its service is up, not just its VM.)"""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def probe_lab(job: Job, claim: jobs.Claim, provider: Provider, ref: StackRef) -> str:
    """Read a ready stack's outputs (first time), check its address, and see whether the lab answers.

    The address is checked before every probe, and only the checked address is contacted. An
    SSH lab whose template gives no ``host_key`` has answered when its SSH server completes a key
    exchange; the key it shows is recorded (trust on first use) and verified from then on.
    """
    if not claim.host:  # first probe since the stack came up: read its outputs
        read = read_outputs(job, provider, ref)
        if isinstance(read, str):
            return read
        claim = read
    try:
        address, port = addressing.check(claim.provider, claim.host, claim.port)
    except addressing.AddressRefused as exc:
        jobs.record_bad_address(claim, str(exc))
        return jobs.REFUSED
    if claim.protocol == "ssh" and not claim.host_key:
        key = hostkeys.read_host_key(address, port, PROBE_TIMEOUT_SECONDS)
        jobs.record_probe(claim, key is not None, host_key=key or "")
    else:
        jobs.record_probe(claim, probe(address, port))
    return "done"


def read_outputs(job: Job, provider: Provider, ref: StackRef) -> jobs.Claim | str:
    """Read a stack's outputs once it came up (after a resume: the reboot its template asks first), and
    return the claim with them; or what came of it instead.

    One worker at a time per lab (a lease): a burst of probes (each pass and each observation that sees
    the lab up sends one) must not read them over and over, nor reboot a resumed lab's servers again.
    Under the lease the row is read afresh: the worker that held it before may have stored them.
    """
    key = f"outputs:{job.lab_id}"
    token = observe.take_lease(key, timezone.now(), OUTPUTS_LEASE_SECONDS)
    if token is None:
        return "outputs being read"  # by another worker; a later probe uses them
    try:
        claim = jobs.claim(job)
        if claim is None or claim.host:
            return claim or "stale"
        if claim.reboot_on_resume:
            provider.after_resume(ref)
        info = provider.get(ref)
        outcome = jobs.record_outputs(claim, dict(info.outputs), info.raw_status)
        if outcome != jobs.STORED:
            return outcome
        claim = jobs.claim(job)
        return claim if claim is not None and claim.host else "no address"
    finally:
        observe.release_lease(key, token, forget=True)


def carry_out(job: Job) -> str:
    """Make the job's one provider call (or probe) and record what came of it."""
    claim = jobs.claim(job)
    if claim is None:
        return "stale"
    if claim.provider not in clouds.providers():
        message = f"provider {claim.provider!r} is not in XBLOCK_SETTINGS['labxblock']['providers'] any more"
        log.error("labxblock: lab %s: %s", job.lab_id, message)
        jobs.record_call_failed(claim, message)  # retried with backoff, then failed visibly
        return "no such provider"
    provider = clouds.provider(claim.provider)
    ref = provider.load_state(claim.stack_name, claim.provider_state)
    action = job.action
    dbconnections.release()  # the call below may take the cloud minutes; the records after it reconnect
    if action is Action.CREATE:
        spec = StackSpec(
            name=claim.stack_name,
            template=claim.template,
            environment=claim.environment,
            parameters=claim.parameters,
            tags=(jobs.install_tag(), *claim.tags),
        )
        try:
            created = provider.create(spec)
        except (QuotaExceeded, PermanentError) as exc:
            log.warning("labxblock: provider %s refused stack %s: %s", claim.provider, claim.stack_name, exc)
            jobs.record_refused(claim, str(exc))
            return "refused"
        jobs.record_created(claim, provider.get_state(created))
    elif action is Action.SUSPEND:
        provider.suspend(ref)
    elif action is Action.RESUME:
        provider.resume(ref)
    elif action is Action.DELETE:
        provider.delete(ref)
    elif action is Action.PROBE:
        return probe_lab(job, claim, provider, ref)
    if action in CALLS:
        calls.accepted(job, timezone.now())
    return "done"


@shared_task(bind=True, name="labxblock.tasks.perform_job", max_retries=MAX_CALL_RETRIES, **CALL_TASK_OPTIONS)
def perform_job(self, lab_id: int, action: str, state: str, issued: str | None = None) -> str:
    """One job decided by the reconciler (or a learner's request); ``issued``: the call's identity."""
    settings = configured(f"{action} of lab {lab_id}")
    if settings is None:
        return NOT_CONFIGURED  # the reconciler decides it again once the site is configured
    job = Job.from_args(lab_id, action, state, issued)
    try:
        current = calls.started(job, timezone.now())  # the acceptance window counts from the call
        if current is None:
            return "stale"
        job = current
        return carry_out(job)
    except (TemporaryError, *DATABASE_ERRORS) as exc:
        if unanswered(job, exc):
            return "no answer"
        if self.request.retries < self.max_retries:
            delay = exc.delay if isinstance(exc, TemporaryError) else DB_RETRY_DELAY
            countdown = min(MAX_RETRY_COUNTDOWN, delay * 2**self.request.retries)
            retried = _note_retry(job, countdown, exc)
            if retried is None:
                return "stale"
            raise self.retry(args=retried.as_args(), countdown=countdown, exc=exc,
                             queue=calls.queue_for(job.action)) from None
        return _give_up(job, exc)
    except (PermanentError, NotFound) as exc:
        return _give_up(job, exc)


def unanswered(job: Job, exc: Exception) -> bool:
    """A call that went out and got no answer in time is not sent again at once: the cloud is most likely
    at it (Heat answers a create only once it has validated and stored the template, which can outlast
    the read timeout under load), and a second request would only add to its load. The observation
    sees it taken, or its acceptance window runs out and it is issued again."""
    if not (isinstance(exc, NoAnswer) and job.action in CALLS):
        return False
    log.info("labxblock: %s of lab %s got no answer; not sent again before its acceptance window: %s",
             job.action, job.lab_id, exc)
    return True


def _note_retry(job: Job, countdown: float, exc: Exception) -> Job | None:
    """Tell the engine the call is not lost, only retried: its acceptance window counts from the retry.

    Returns the job the retry carries; None if it is a stale copy of the lab's call (not retried).
    """
    log.info("labxblock: %s of lab %s retried in %.0f s: %s", job.action, job.lab_id, countdown, exc)
    if job.action in CALLS and not isinstance(exc, DATABASE_ERRORS):
        return calls.retrying(job, timezone.now() + timedelta(seconds=countdown))
    return job


def _give_up(job: Job, exc: Exception) -> str:
    log.warning("labxblock: %s of lab %s failed: %s", job.action, job.lab_id, exc)
    try:
        claim = jobs.claim(job)
        if claim is not None:
            jobs.record_call_failed(claim, str(exc))
    except DATABASE_ERRORS as db_exc:  # the call's acceptance window will tell
        log.warning("labxblock: cannot record that %s of lab %s failed: %s", job.action, job.lab_id, db_exc)
    return "failed"


@shared_task(bind=True, name="labxblock.tasks.advance_lab", max_retries=MAX_CALL_RETRIES, **CALL_TASK_OPTIONS)
def advance_lab(self, lab_id: int) -> str:
    """Request launch/resume/suspend/delete of one lab now, without waiting for the next tick."""
    settings = configured(f"advancing lab {lab_id}")
    if settings is None:
        return NOT_CONFIGURED
    try:
        job = engine.step(lab_id, timezone.now(), "worker", send=False)
    except DATABASE_ERRORS as exc:  # nothing was decided: decide it again in a moment
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=DB_RETRY_DELAY, exc=exc, queue=settings.queues.calls) from None
        raise
    if job is None:
        return "nothing to do"
    try:
        current = calls.started(job, timezone.now())
        if current is None:
            return "stale"
        job = current
        return carry_out(job)
    except (TemporaryError, *DATABASE_ERRORS) as exc:  # hand over to perform_job's retries
        if unanswered(job, exc):
            return "no answer"
        delay = exc.delay if isinstance(exc, TemporaryError) else DB_RETRY_DELAY
        countdown = min(MAX_RETRY_COUNTDOWN, delay)
        retried = _note_retry(job, countdown, exc)
        if retried is None:
            return "stale"
        queue = calls.queue_for(job.action)
        perform_job.apply_async(args=retried.as_args(), countdown=countdown, queue=queue)
        return "retrying"
    except (PermanentError, NotFound) as exc:
        return _give_up(job, exc)


@shared_task(name="labxblock.tasks.reconcile", **TICK_TASK_OPTIONS)
def reconcile() -> int:
    """The reconcile tick, on the database alone: every lab whose next step needs no news from the cloud
    moves one step, warm pools are kept at their size, queued labs are placed, and providers with labs
    in flight get an observation."""
    settings, now, started = configured("the reconcile tick"), timezone.now(), 0
    if settings is None:
        return 0
    periodic.mark_idle(now)  # a learner who left (labs.leave) is suspended this pass, not at the idle tick
    budgets.mark_spent(now)  # a lab whose time budget ran out, whether or not its page is open
    for name, conf in settings.providers.items():
        budget = engine.call_budget(name, conf.actions_per_minute, now)
        started += len(engine.reconcile_provider(name, now, budget))
    try:
        pools.tend(now)  # warm pools at their size: new pool stacks are placed just below
    except Exception:  # warm pools are an extra: their trouble never stops placement or observation
        log.exception("labxblock: warm pools not tended this tick")
    started += len(engine.place_queued(now))
    observe.start(now)
    return started


@shared_task(name="labxblock.tasks.observe", **OBSERVE_TASK_OPTIONS)
def observe_provider(provider_name: str, lease: str | None = None) -> int | str:
    """Follow one provider's labs in flight (see ``labxblock.observer``), within the lease the tick took
    for it (``lease``: its token, its end): the threads pool has no time limits, so the observation
    keeps to it itself, and gives it up when done unless it ran out and is someone else's now."""
    if configured(f"observing provider {provider_name}") is None:
        return NOT_CONFIGURED  # its lease runs out; the tick starts none on a site not configured
    key = f"observe:{provider_name}"
    return _leased(key, lease, lambda until: observer.observe_provider(provider_name, until),
                   observe.lease_seconds())


def _leased(key: str, lease: str | None, work: Callable[[datetime | None], int], seconds: float) -> int:
    """Do ``work`` within the lease (renewed for ``seconds`` as it starts), then release it if still ours."""
    token = datetime.fromisoformat(lease) if lease else None
    if token is not None:
        token = observe.renew_lease(key, token, timezone.now(), seconds)
        if token is None:  # ours ran out while queued, and another has it: that one does the work
            log.info("labxblock: %s: its lease went to another while it waited; nothing to do", key)
            return 0
    try:
        return work(token)
    finally:
        if token is not None and not observe.release_lease(key, token):
            log.warning("labxblock: %s outlasted its lease (until %s); another has it now", key, token)


@shared_task(name="labxblock.tasks.suspend_idle", **TICK_TASK_OPTIONS)
def suspend_idle() -> int:
    """Mark labs whose keepalives stopped, or whose time budget ran out, for suspension; the reconcile
    tick suspends them."""
    if configured("the suspend-idle tick") is None:
        return 0
    now = timezone.now()
    return periodic.mark_idle(now) + budgets.mark_spent(now)


@shared_task(name="labxblock.tasks.reap", **TICK_TASK_OPTIONS)
def reap() -> int:
    """Expire unused labs, and start each provider's audit (drift and orphans, on the full list)."""
    if configured("the reap tick") is None:
        return 0
    now = timezone.now()
    return periodic.mark_expired(now) + len(observe.start_audits(now))


@shared_task(name="labxblock.tasks.audit", **OBSERVE_TASK_OPTIONS)
def audit(provider_name: str, lease: str | None = None) -> int | str:
    """The full list of one provider's stacks: labs at rest that drifted, orphans (``labxblock.observer``)."""
    if (settings := configured(f"auditing provider {provider_name}")) is None:
        return NOT_CONFIGURED
    return _leased(f"audit:{provider_name}", lease, lambda until: observer.audit(provider_name, until),
                   settings.reap_interval_seconds)


@shared_task(
    bind=True, name="labxblock.tasks.delete_orphan", max_retries=MAX_CALL_RETRIES, **CALL_TASK_OPTIONS
)
def delete_orphan(self, provider_name: str, stack_name: str, provider_state: dict) -> str:
    """Delete a stack of ours that no lab owns (after the grace period)."""
    settings = configured(f"deleting orphan stack {stack_name}")
    if settings is None:
        return NOT_CONFIGURED  # the next reap finds it again
    provider = clouds.provider(provider_name)
    try:
        provider.delete(provider.load_state(stack_name, provider_state))
    except TemporaryError as exc:
        countdown = min(MAX_RETRY_COUNTDOWN, exc.delay)
        raise self.retry(countdown=countdown, exc=exc, queue=settings.queues.calls) from None
    log.info("labxblock: deleted orphan stack %s on provider %s", stack_name, provider_name)
    return "deleted"


# --- progress checks ---


@shared_task(name="labxblock.tasks.run_checks", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
@sensitive_variables("job")
def run_checks(run_id: int) -> str:
    """Run one CheckRun's scripts in its lab and store the results.

    Holds a worker for the scripts' own timeouts at most: ``labs.checking`` sends it with a
    time limit of the run's budget plus a margin. A redelivered run that already finished
    or outlived its deadline is dropped by ``claim``. A finished run's score goes to the
    gradebook from here (``labs.grading``), so the learner's page need not be open.
    """
    if configured(f"check run {run_id}") is None:
        return NOT_CONFIGURED  # the run is closed as lost at its deadline
    job = checking.claim(run_id)
    if job is None:
        grading.publish_run(run_id)  # a run finished before a crash: publishing again is a no-op
        return "stale"
    specs = [checks.CheckSpec(name=c["name"], script=c["script"], weight=float(c["weight"]),
                              hint=c.get("hint") or "", host=c.get("host") or "", timeout=float(c["timeout"]))
             for c in job.checks]
    label = job.reach.label
    dbconnections.release()  # the scripts may run for minutes
    try:
        results = checks.run_checks(script_runner.target(job.reach), specs,
                                    connect_timeout=job.connect_timeout)
    except checks.LabUnreachable as exc:
        log.info("labxblock: check run %s: lab %s not checked (%s): %s", run_id, label, exc.reason, exc)
        checking.record_failure(run_id, exc.reason)
        return exc.reason
    except SoftTimeLimitExceeded:
        log.warning("labxblock: check run %s on lab %s ran out of time", run_id, label)
        checking.record_failure(run_id, checking.LOST)
        return checking.LOST
    checking.record_results(run_id, [dataclasses.asdict(r) for r in results])
    outcome = grading.publish_run(run_id)
    log.info("labxblock: check run %s on lab %s scored; gradebook: %s", run_id, label, outcome)
    return "done"


@shared_task(name="labxblock.tasks.run_hooks", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def run_hooks(lab_id: int, state: str) -> str:
    """Run a lab's lifecycle scripts of the kind now due, log each run, end the lab's wait
    (``labxblock.script_runner``). ``labs.calls`` sends it with a time limit above any run's bound."""
    if configured(f"lifecycle scripts of lab {lab_id}") is None:
        return NOT_CONFIGURED  # the lab's wait ends at its time
    return script_runner.run_hooks(lab_id, State(state))
