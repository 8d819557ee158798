"""Author scripts run inside a lab for the tasks: where they connect, and lifecycle scripts end to end.

The labs side (``labs.checking``, ``labs.hooks``) says what to run and records what came of it;
``checks`` runs scripts over SSH. Nothing here is logged with a secret: the lab's key and password
travel in ``checking.Reach`` and ``checks.CheckTarget`` only.
"""

from __future__ import annotations

import dataclasses
import logging

from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from labxblock import checks, dbconnections
from labxblock.labs import checking, hooks, jobs
from labxblock.lifecycle import State

log = logging.getLogger(__name__)


@sensitive_variables("reach", "login")
def target(reach: checking.Reach) -> checks.CheckTarget:
    """Where scripts run, for the check runner: the checked address, the login, the key to verify."""
    login = reach.login
    return checks.CheckTarget(host=reach.host, port=reach.port, username=login.username,
                              private_key=login.private_key, password=login.password,
                              host_key=reach.host_key, label=reach.label)


@sensitive_variables("job")
def run_hooks(lab_id: int, state: State) -> str:
    """Run the lab's lifecycle scripts of the kind due in ``state``, log each run, end the lab's wait.

    Bounded like a check run, by each script's timeout. A job that comes after the lab stopped
    waiting for it (moved on, or its time ran out) is dropped: the lifecycle went ahead without it.
    """
    job = hooks.claim(lab_id, state, timezone.now())
    if job is None:
        return "stale"
    results: list[checks.CheckResult] = []
    failure = job.failure
    if job.reach is not None:
        specs = [checks.CheckSpec(name=h["name"], script=h["script"], host=h.get("host") or "",
                                  timeout=float(h["timeout"])) for h in job.scripts]
        dbconnections.release()  # the scripts may run for minutes
        try:
            results = checks.run_checks(target(job.reach), specs,
                                        connect_timeout=checking.CONNECT_TIMEOUT_SECONDS)
        except checks.LabUnreachable as exc:
            failure = f"{exc.reason}: {exc}"
        except SoftTimeLimitExceeded:
            failure = "out of time"
    hooks.record(job, [dataclasses.asdict(r) for r in results], failure)
    jobs.record_scripts_done(job)
    log.info("labxblock: lab %s: %d %s script(s) run%s", lab_id, len(results), job.kind,
             f"; {failure}" if failure else "")
    return "done"
