"""Progress checks through a lab made by the local provider: the provider's own keys, port and host key."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from labxblock.checks import CheckSpec, CheckTarget, LabUnreachable, run_checks
from labxblock.lifecycle import State
from labxblock.providers.local import LocalProvider
from tests.engine_harness import wait_for, wait_for_stack
from tests.integration.test_local_provider import _spec, _ssh
from tests.services import missing_service
from tests.services.process import port_open


@pytest.fixture
def lab(tmp_path: Path):
    if not Path("/usr/sbin/sshd").exists():
        missing_service("openssh-server is not installed")
    provider = LocalProvider("local", {"root": str(tmp_path / "labs")})
    ref = provider.create(_spec())
    info = wait_for_stack(provider, ref, State.READY)
    wait_for("the lab's sshd", lambda: port_open(int(info.outputs["port"])), 10)
    yield provider, ref, info
    provider.delete(ref)


def target(info) -> CheckTarget:
    outputs = info.outputs
    return CheckTarget(host=outputs["public_ip"], port=int(outputs["port"]), username=getpass.getuser(),
                       private_key=outputs["private_key"], host_key=outputs.get("host_key", ""),
                       label=info.ref.name)


def test_checks_see_the_learners_work_in_the_lab(lab):
    _, _, info = lab
    checks = [
        CheckSpec(name="file made", script="test -f ~/done", hint="Create ~/done first."),
        CheckSpec(name="shell works", script="#!/bin/sh\necho fine"),
    ]
    before = run_checks(target(info), checks)
    assert [(r.name, r.passed) for r in before] == [("file made", False), ("shell works", True)]
    assert before[1].stdout.strip() == "fine"

    with _ssh(info) as client:  # the learner does the work, as in their terminal
        _, out, _ = client.exec_command("touch ~/done && echo made")
        assert out.read().strip() == b"made"
    after = run_checks(target(info), checks)
    assert all(result.passed for result in after)


def test_a_suspended_lab_is_unreachable_not_failed(lab):
    provider, ref, info = lab
    provider.suspend(ref)
    wait_for_stack(provider, ref, State.SUSPENDED)
    with pytest.raises(LabUnreachable):
        run_checks(target(info), [CheckSpec(name="anything", script="true")], connect_timeout=2)
    provider.resume(ref)
    wait_for_stack(provider, ref, State.READY)
    assert run_checks(target(info), [CheckSpec(name="anything", script="true")])[0].passed
