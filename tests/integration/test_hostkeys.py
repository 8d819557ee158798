"""Host keys trusted on first use, against real OpenSSH servers (tests/services/sshd.py).

A lab whose template outputs no ``host_key`` has its key recorded by the worker's first
successful probe; every later connection verifies it. A check run against a server with
another key (the address now answers for another machine) is refused as ``host_key`` and
nothing runs. Through the whole engine: a resumed lab keeps its key, a reset one gets its
new stack's key.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from labxblock import hostkeys, labs, tasks
from labxblock.labs import checking, engine
from labxblock.lifecycle import Action, Desired, State
from labxblock.lifecycle.rules import PROBE_WINDOW
from labxblock.models import CheckRun, Lab, LabEvent
from tests.engine_harness import LabPort, lab_spec, wait_for
from tests.services.sshd import SshdServer, run_sshd

COURSE_RUN = "course-v1:Org+Lab+Run"
RECORDED = "host key recorded at first answer"


def test_the_key_a_server_shows_is_read_without_logging_in(sshd) -> None:
    key = hostkeys.read_host_key(sshd.host, sshd.port, timeout=5)
    assert key == sshd.host_key
    assert hostkeys.describe(key) == f"ssh-ed25519 {hostkeys.parse_host_key(key).fingerprint}"
    silent = LabPort()  # accepts and hangs up: no SSH server there
    try:
        assert hostkeys.read_host_key("127.0.0.1", silent.port, timeout=2) is None
    finally:
        silent.close()
    assert hostkeys.read_host_key("127.0.0.1", silent.port, timeout=2) is None  # closed port


def lab_on(server: SshdServer, **fields: Any) -> Lab:
    learner = get_user_model().objects.create_user(username="ada", email="ada@example.com")
    values = {"provider": "default", "state": State.STARTING.value, "desired": Desired.UP.value,
              "ip": server.host, "port": server.port, "stack_user": server.username,
              "private_key": server.private_key, **fields}
    return Lab.objects.create(learner=learner, course_run=COURSE_RUN, lab_key="lab", **values)


def check(lab: Lab, marker: Any) -> CheckRun:
    """A check run of one script that leaves ``marker`` behind, carried out by the task here."""
    specs = [{"name": "mark", "script": f"touch {marker}", "weight": 1.0, "hint": "", "host": "",
              "timeout": 5}]
    checking.request_check(lab.learner, COURSE_RUN, "lab", "block-1", specs, actor="learner")
    run = CheckRun.objects.order_by("-pk").first()
    tasks.run_checks(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_the_first_probe_records_the_key_and_a_later_check_against_another_key_is_refused(
    sshd, tmp_path
) -> None:
    lab = lab_on(sshd)  # the template gave no host_key
    assert tasks.carry_out(engine.Job(lab.pk, Action.PROBE, State.STARTING)) == "done"
    lab.refresh_from_db()
    assert lab.state == State.READY and lab.outputs["host_key"] == sshd.host_key
    event = LabEvent.objects.get(lab=lab, reason__startswith=RECORDED)
    assert hostkeys.describe(sshd.host_key) in event.reason
    access = labs.terminal_access(lab.learner, COURSE_RUN, "lab")
    assert access.host_key == sshd.host_key  # the ticket carries it to the gateway and guacd

    marker = tmp_path / "ran"
    assert check(lab, marker).state == CheckRun.State.DONE and marker.exists()  # verified: it runs
    marker.unlink()
    with run_sshd(tmp_path / "other") as other:  # the lab's address now answers with another key
        Lab.objects.filter(pk=lab.pk).update(port=other.port)
        run = check(lab, marker)
    assert (run.state, run.reason) == (CheckRun.State.FAILED, checking.HOST_KEY)
    assert not marker.exists()


@pytest.mark.django_db
def test_an_ssh_lab_without_a_host_key_has_not_answered_until_its_ssh_server_does(sshd) -> None:
    silent = LabPort()  # the port is open, but no SSH server speaks there yet
    sent = timezone.now()
    try:  # the probe was sent: no other until its window passes, unless it answers first
        lab = lab_on(sshd, port=silent.port, next_attempt_at=sent + PROBE_WINDOW)
        tasks.carry_out(engine.Job(lab.pk, Action.PROBE, State.STARTING))
    finally:
        silent.close()
    lab.refresh_from_db()
    assert (lab.state, lab.probe_ok, lab.outputs) == (State.STARTING, False, {})
    assert sent <= lab.next_attempt_at <= timezone.now()  # it answered "not yet": the next pass probes again


def template_at(server: SshdServer) -> str:
    """A template whose lab is ``server``, with no host_key output."""
    text = lab_spec(1).providers[0].template
    text = text.replace("  port:\n    value: 1\n", f"  port:\n    value: {server.port}\n")
    return text.partition("  host_key:\n")[0]


def spec_at(server: SshdServer) -> labs.LabSpec:
    return labs.LabSpec(course_run=COURSE_RUN, lab_key="lab",
                        providers=(labs.ProviderChoice("default", None, template_at(server)),))


@pytest.mark.redis
@pytest.mark.slow
def test_a_resumed_lab_keeps_its_key_and_a_reset_lab_gets_its_new_stacks_key(engine_factory, sshd, tmp_path):
    engine_ = engine_factory()
    learner = engine_.user("ada")
    lab_id = labs.request_launch(learner, spec_at(sshd), actor="learner").lab_id

    def host_key_when(state: State) -> str | None:
        lab = Lab.objects.get(pk=lab_id)
        return lab.outputs.get("host_key") if lab.state == state and lab.desired == Desired.UP else None

    assert wait_for("ready with a recorded key", lambda: host_key_when(State.READY), 30) == sshd.host_key
    Lab.objects.filter(pk=lab_id).update(desired=Desired.SUSPENDED)
    wait_for("suspended", lambda: Lab.objects.get(pk=lab_id).state == State.SUSPENDED, 30)
    labs.request_launch(learner, spec_at(sshd), actor="learner")
    assert wait_for("resumed", lambda: host_key_when(State.READY), 30) == sshd.host_key
    assert engine_.cloud.counters().get("stack_resume") == 1
    recorded = LabEvent.objects.filter(lab_id=lab_id, reason__startswith=RECORDED)
    assert recorded.count() == 1  # kept, not read again

    with run_sshd(tmp_path / "new") as new:  # the fresh stack's server has a key of its own
        labs.request_reset(learner, spec_at(new), actor="learner")
        wait_for("rebuilt with the new stack's key", lambda: host_key_when(State.READY) == new.host_key, 45)
    assert recorded.count() == 2
