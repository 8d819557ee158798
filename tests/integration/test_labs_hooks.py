"""Lifecycle scripts end to end: real sshd labs made by the local provider, a real Celery worker (calls and
checks queues) and beat. Setup runs once before the learner is told the lab is ready, after-resume after
each resume, before-suspend before each suspend while the lab still runs; each run is in the lab's event
log without a secret; a hanging or failing script never holds a suspend beyond its timeout.
"""

from __future__ import annotations

import dataclasses
import getpass
import re
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from labxblock import labs
from labxblock.fields import CHECK_TIMEOUT_MAX, HOOKS_PER_KIND
from labxblock.labs import calls, engine, operator, pools
from labxblock.lifecycle import Action, State
from labxblock.models import Lab, LabEvent
from labxblock.providers.local import LocalProvider
from labxblock.tutor.render import MIN_VISIBILITY_TIMEOUT
from tests.celery_app import app as celery_app
from tests.engine_harness import lab_spec, wait_for
from tests.integration.test_queues import broker, tasks_in  # noqa: F401 (broker: a fixture)
from tests.services import missing_service
from tests.services.celery_procs import QUEUES

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TEMPLATE = """heat_template_version: 2018-08-31
parameters:
  run: {type: string}
resources:
  password:
    type: OS::Heat::RandomString
    properties: {length: 20}
  lab:
    type: LabXBlock::Local::SSH
outputs:
  public_ip: {value: {get_attr: [lab, public_ip]}}
  port: {value: {get_attr: [lab, port]}}
  private_key: {value: {get_attr: [lab, private_key]}}
  host_key: {value: {get_attr: [lab, host_key]}}
  password: {value: {get_attr: [password, value]}}
"""
MARKER = "only-in-the-script-0x5eed"  # the script's text must never reach the log


def hook(kind: str, script: str, timeout: float = 20, name: str = "") -> dict:
    return {"kind": kind, "name": name or kind.replace("_", " "), "script": script, "timeout": timeout,
            "host": ""}


@pytest.fixture
def local_engine(engine_factory, tmp_path: Path):
    """The engine on the local provider: each lab a real sshd on 127.0.0.1, frozen by suspend."""
    if not Path("/usr/sbin/sshd").exists():
        missing_service("openssh-server is not installed (apt install openssh-server)")
    root = tmp_path / "labs"
    provider = {"type": "local", "root": str(root), "allowed_networks": ["127.0.0.0/8"]}
    engine = engine_factory({"default": provider}, suspend_timeout=3600, reap_interval_seconds=3600)
    yield engine, root
    cleanup = LocalProvider("cleanup", {"root": str(root)})
    for info in cleanup.list("labxblock-test"):
        cleanup.delete(info.ref)


def launch(engine, hooks: list[dict], name: str = "ada"):
    spec = lab_spec(0)
    choice = dataclasses.replace(spec.providers[0], template=TEMPLATE)
    spec = dataclasses.replace(spec, providers=(choice,), stack_user=getpass.getuser(), hooks=tuple(hooks))
    learner = engine.user(name)
    return learner, spec, labs.request_launch(learner, spec, actor="learner").lab_id


def state(lab_id: int) -> str:
    return Lab.objects.values_list("state", flat=True).get(pk=lab_id)


def home(root: Path, lab_id: int) -> Path:
    return root / Lab.objects.get(pk=lab_id).stack_name / "home"


SCRIPT_RUN = re.compile(r"^(setup|after_resume|before_suspend) scripts? ")
MOVED = ("desired", "answered")  # the lifecycle's reasons for the moves ``order`` lists


def moves(lab_id: int) -> list[tuple[str, str, str]]:
    """The lab's log in order: (actor, to_state, reason), its scripts' runs included."""
    events = LabEvent.objects.filter(lab_id=lab_id).order_by("id")
    return list(events.values_list("actor", "to_state", "reason"))


def runs(lab_id: int) -> list[str]:
    """The scripts' runs in the lab's log (the moves they let happen are logged by "scripts" too)."""
    return [reason for actor, _, reason in moves(lab_id) if actor == "scripts" and SCRIPT_RUN.match(reason)]


def order(lab_id: int) -> list[str]:
    """The scripts' runs (by kind) and the lab's moves into suspending, resuming and ready, in order."""
    found = []
    for _actor, to_state, reason in moves(lab_id):
        if SCRIPT_RUN.match(reason):
            found.append(reason.split(" ", 1)[0])
        elif to_state in (State.SUSPENDING, State.RESUMING, State.READY) and reason in MOVED:
            found.append(to_state)
    return found


def test_setup_once_after_resume_each_time_before_suspend_while_it_runs_all_logged_without_secrets(
        local_engine) -> None:
    engine, root = local_engine
    setup = f"# {MARKER}\ncat ../outputs.json\necho setup >> hooks.log"  # prints the lab's key and password
    learner, spec, lab_id = launch(engine, [
        hook("setup", setup),
        hook("after_resume", "echo resume >> hooks.log"),
        hook("before_suspend", "echo suspend >> hooks.log"),
    ])
    wait_for("the lab to be ready", lambda: state(lab_id) == State.READY, 60)
    log = home(root, lab_id) / "hooks.log"
    assert log.read_text() == "setup\n"  # in place before the learner was let in
    assert order(lab_id)[:2] == ["setup", "ready"], "set up before the learner was told it is ready"

    for cycle in (1, 2):
        operator.act("suspend", [lab_id], actor="operator:command")
        wait_for("the lab to be suspended", lambda: state(lab_id) == State.SUSPENDED, 60)
        # Written by the script in the running lab (a frozen one runs nothing), before the suspend call;
        # kept over the suspend and the resume.
        assert order(lab_id)[-2:] == ["before_suspend", "suspending"]
        labs.request_launch(learner, spec, actor="learner")
        wait_for("the lab to be ready again", lambda: state(lab_id) == State.READY, 60)
        assert log.read_text().splitlines() == ["setup"] + ["suspend", "resume"] * cycle
        assert order(lab_id)[-3:] == ["resuming", "after_resume", "ready"]

    reasons = runs(lab_id)
    kinds = [reason.split(" ", 1)[0] for reason in reasons]
    assert kinds == ["setup", "before_suspend", "after_resume", "before_suspend", "after_resume"]
    for reason in reasons:  # name, exit status and seconds
        assert re.match(r"^\w+ script '[\w ]+': exit status 0 after \d+\.\d s", reason), reason
    lab = Lab.objects.get(pk=lab_id)
    text = "\n".join(reason for _, _, reason in moves(lab_id))
    secrets = [lab.password, *[line for line in lab.private_key.splitlines() if len(line) >= 16]]
    assert "[redacted]" in reasons[0] and "PRIVATE KEY" not in text
    assert not [secret for secret in secrets if secret in text], "a secret reached the event log"
    assert MARKER not in text, "the script itself reached the event log"


def test_a_warm_pools_stack_is_set_up_when_built_and_a_claimed_one_runs_after_resume_before_ready(
        local_engine) -> None:
    """A pool stack is any lab's stack: set up once when built, its before-suspend scripts run before
    it rests; the learner who claims it gets it set up, after its after-resume scripts."""
    engine, root = local_engine
    scripts = [hook("setup", "echo setup >> hooks.log"), hook("after_resume", "echo resume >> hooks.log"),
               hook("before_suspend", "echo suspend >> hooks.log")]
    pools.configure(course_run=lab_spec(0).course_run, lab_key=lab_spec(0).lab_key, size=1)
    _, spec, _ = launch(engine, scripts, name="staff")  # the pool learns the template, scripts included
    resting = Lab.objects.filter(learner__isnull=True, state=State.SUSPENDED)
    wait_for("a pool stack at rest", resting.exists, 90,
             explain=lambda: list(Lab.objects.filter(learner__isnull=True).values_list("state", "desired")))
    stack = resting.get()
    assert (root / stack.stack_name / "home" / "hooks.log").read_text() == "setup\nsuspend\n"

    status = labs.request_launch(engine.user("ada"), spec, actor="learner")
    assert Lab.objects.get(pk=status.lab_id).stack_name == stack.stack_name
    wait_for("the claimed lab ready", lambda: state(status.lab_id) == State.READY, 60)
    assert home(root, status.lab_id).joinpath("hooks.log").read_text() == "setup\nsuspend\nresume\n"
    assert order(status.lab_id)[-3:] == ["resuming", "after_resume", "ready"]


def test_a_hanging_or_failing_before_suspend_script_holds_the_suspend_no_longer_than_its_timeout(
        local_engine) -> None:
    engine, root = local_engine
    _, _, lab_id = launch(engine, [
        hook("before_suspend", "echo started >> hooks.log; sleep 600", timeout=3, name="hangs"),
        hook("before_suspend", "echo failing >&2; exit 3", name="fails"),
    ])
    wait_for("the lab to be ready", lambda: state(lab_id) == State.READY, 60)
    asked = time.monotonic()
    operator.act("suspend", [lab_id], actor="operator:command")
    wait_for("the suspend", lambda: state(lab_id) in (State.SUSPENDING, State.SUSPENDED), 40)
    waited = time.monotonic() - asked
    # The hanging script's 3 s, GNU timeout's KILL grace (2 s), the failing one, a pass or two.
    assert 3 <= waited < 15, waited
    wait_for("the lab to be suspended", lambda: state(lab_id) == State.SUSPENDED, 30)
    hung, failed = runs(lab_id)
    assert hung.startswith("before_suspend script 'hangs': timed out after ")
    assert failed.startswith("before_suspend script 'fails': exit status 3 after ")
    assert failed.endswith("; stderr: failing")
    assert (home(root, lab_id) / "hooks.log").read_text() == "started\n"


def _longest_idle_connection() -> int:
    """Seconds the longest-idle connection to the test database has waited (this one aside)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(TIME), 0) FROM information_schema.PROCESSLIST"
                       " WHERE DB = DATABASE() AND COMMAND = 'Sleep' AND ID <> CONNECTION_ID()")
        return int(cursor.fetchone()[0])


@pytest.mark.mariadb
def test_a_running_script_holds_no_database_connection(local_engine, mariadb) -> None:
    # A worker thread used to keep its connection for the whole script (up to HOOK_TASK_SECONDS).
    engine, _ = local_engine
    _, _, lab_id = launch(engine, [hook("setup", "sleep 8", timeout=20)])
    longest, deadline = 0, time.monotonic() + 90
    while state(lab_id) != State.READY:
        assert time.monotonic() < deadline, f"the lab is {state(lab_id)}, not ready"
        longest = max(longest, _longest_idle_connection())
        assert longest < 5, f"a connection sat idle {longest} s while the setup script ran"
        time.sleep(0.3)
    [ran] = runs(lab_id)
    seconds = re.match(r"setup script 'setup': exit status 0 after ([0-9.]+) s", ran)
    assert seconds and float(seconds.group(1)) >= 8, ran  # it did run the whole 8 s


@pytest.mark.django_db(transaction=True)
def test_scripts_go_to_the_checks_queue_with_a_time_limit_not_to_the_cloud_calls(request) -> None:
    redis = request.getfixturevalue("broker")  # test_queues' Redis, emptied afterwards
    celery_app.conf.broker_url = redis.url  # this process sends the job, after commit
    user = get_user_model().objects.create_user("queued")
    lab = Lab.objects.create(learner=user, course_run="course-v1:O+Hooks+R", lab_key="k", provider="default",
                             state=State.STARTING, probe_ok=True, hook_seconds={"setup": 45.0})
    with transaction.atomic():
        job = engine.apply(lab, engine.believed(lab), timezone.now(), "prober")
        engine.dispatch([job])
    assert job.action is Action.HOOK
    assert Lab.objects.get(pk=lab.pk).state == State.STARTING  # not ready until the scripts ended
    (message,) = redis.queued(QUEUES.checks)
    assert message["headers"]["task"] == "labxblock.tasks.run_hooks"
    assert message["headers"]["timelimit"] == [calls.HOOK_TASK_SECONDS + 30, calls.HOOK_TASK_SECONDS]
    # Longer than the longest run authoring allows, and ended before Redis would hand out a second copy.
    longest_run = HOOKS_PER_KIND * CHECK_TIMEOUT_MAX  # one kind runs at a time
    assert longest_run < calls.HOOK_TASK_SECONDS < calls.HOOK_TASK_SECONDS + 30 < MIN_VISIBILITY_TIMEOUT
    assert tasks_in(redis, QUEUES.calls) == []
