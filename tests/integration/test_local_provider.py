"""What only the local provider promises, beyond the provider contract.

Real sshd labs on 127.0.0.1, reached with paramiko: state kept on disk survives a
new provider instance (a worker restart); suspend really stops every process of
the lab and resume brings back the same shell; delete leaves nothing behind.
"""

from __future__ import annotations

import getpass
import io
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from labxblock.lifecycle import State
from labxblock.providers import load_provider_class
from labxblock.providers import local_procs as procs
from labxblock.providers.base import PermanentError, StackInfo, StackSpec
from labxblock.providers.local import LocalProvider
from tests.engine_harness import wait_for_stack
from tests.integration.test_provider_contract import LOCAL_GOOD_TEMPLATE
from tests.services import missing_service


@pytest.fixture(autouse=True)
def _needs_sshd() -> None:
    if not Path("/usr/sbin/sshd").exists():
        missing_service("openssh-server is not installed (apt install openssh-server)")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "labs"
    yield root
    provider = LocalProvider("cleanup", {"root": str(root)})
    for info in provider.list("lxb-local-test"):
        provider.delete(info.ref)


def _spec(template: str = LOCAL_GOOD_TEMPLATE % {"wait": 0}) -> StackSpec:
    return StackSpec(name=f"lxb-{uuid.uuid4().hex[:12]}", template=template, parameters={"run": "r"},
                     tags=("lxb-local-test",))


def _ssh(info: StackInfo) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(info.outputs["private_key"]))
    client.connect("127.0.0.1", int(info.outputs["port"]), username=getpass.getuser(), pkey=key,
                   allow_agent=False, look_for_keys=False, timeout=10)
    return client


def _shell_says(client: paramiko.SSHClient, command: str, expect: str, timeout: float = 10) -> str:
    """Type ``command`` into an interactive shell (a pty, as the console does) and read until ``expect``."""
    chan = client.invoke_shell(term="xterm", width=120, height=40)
    seen, deadline, sent = "", time.monotonic() + timeout, False
    while expect not in seen:
        if seen and not sent:  # a prompt: the shell reads now (tmux drops what came before it)
            chan.send(command + "\n")
            sent = True
        assert time.monotonic() < deadline, seen
        if chan.recv_ready():
            seen += chan.recv(65536).decode(errors="replace")
        else:
            time.sleep(0.05)
    chan.close()
    return seen


def test_the_entry_point_names_the_local_provider() -> None:
    assert load_provider_class("local") is LocalProvider


def test_a_new_provider_instance_finds_every_lab_again(root: Path) -> None:
    """All state is on disk: a restarted worker (a new instance) carries on."""
    first = LocalProvider("local", {"root": str(root)})
    ref = first.create(_spec())
    wait_for_stack(first, ref, State.READY)

    second = LocalProvider("local", {"root": str(root)})
    state = second.get_state(ref)
    found = second.load_state(ref.name, state)
    info = second.get(found)
    assert info.state == State.READY and info.outputs["port"]
    assert [i.ref for i in second.list("lxb-local-test")] == [ref]
    assert info.created_at is not None and info.created_at.tzinfo is not None
    second.suspend(found)

    assert LocalProvider("local", {"root": str(root)}).get(ref).state == State.SUSPENDED


def test_suspend_stops_every_process_and_resume_brings_back_the_same_shell(root: Path) -> None:
    provider = LocalProvider("local", {"root": str(root)})
    ref = provider.create(_spec())
    info = wait_for_stack(provider, ref, State.READY)
    client = _ssh(info)
    before = _shell_says(client, "export MARK=42; echo shell-$$-$MARK", "-42\r")
    client.close()  # the learner leaves: the session's shell lives on in the lab's tmux
    shell_pid = before.split("shell-")[-1].split("-")[0]

    provider.suspend(ref)
    assert provider.get(ref).state == State.SUSPENDED
    state = provider._read(root / ref.name)
    lab = procs.lab_processes(state["id"], state["sshd_pid"], state["sshd_start"])
    assert int(shell_pid) in {p.pid for p in lab}
    assert {p.state for p in lab} == {"T"}, lab  # really stopped, every one of them

    provider.resume(ref)
    info = wait_for_stack(provider, ref, State.READY)
    # (the closed session's sshd children, stopped while tearing down, may finish exiting now)
    assert all(now.state != "T" for p in lab if (now := procs.read_proc(p.pid)) is not None)
    assert procs.read_proc(int(shell_pid)).state != "T"
    client = _ssh(info)
    again = _shell_says(client, "echo again-$$-$MARK", f"again-{shell_pid}-42")
    assert f"again-{shell_pid}-42" in again
    client.close()


def test_suspends_and_resumes_from_many_threads_at_once_leave_one_true_state(root: Path) -> None:
    """Workers racing on one lab: each change whole, none lost, and the state file says what the lab is."""
    ref = LocalProvider("local", {"root": str(root)}).create(_spec())
    wait_for_stack(LocalProvider("local", {"root": str(root)}), ref, State.READY)
    workers = [LocalProvider("local", {"root": str(root)}) for _ in range(2)]  # two worker processes' own
    barrier, errors = threading.Barrier(8), []

    def race(i: int) -> None:
        provider = workers[i % 2]
        barrier.wait()
        for n in range(15):
            try:
                (provider.suspend if (i + n) % 2 else provider.resume)(ref)
            except Exception as exc:  # the test reports every one
                errors.append(repr(exc))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    lab = root / ref.name
    assert sorted(p.name for p in lab.iterdir() if "state" in p.name) == ["state.json"]  # no temp file left
    state = LocalProvider._read(lab)
    running = procs.lab_processes(state["id"], state["sshd_pid"], state["sshd_start"])
    assert {p.state == "T" for p in running} == {state["status"] == "suspended"}, (state["status"], running)
    workers[0].resume(ref)
    wait_for_stack(workers[1], ref, State.READY)


def test_commands_run_in_the_labs_home_as_progress_checks_need(root: Path) -> None:
    provider = LocalProvider("local", {"root": str(root)})
    ref = provider.create(_spec())
    client = _ssh(wait_for_stack(provider, ref, State.READY))
    _, out, _ = client.exec_command("touch ~/done && pwd && ls")
    assert out.read().decode().split() == [str(root / ref.name / "home"), "done"]
    assert out.channel.recv_exit_status() == 0
    client.close()


def test_delete_kills_the_labs_processes_and_removes_its_directory(root: Path) -> None:
    provider = LocalProvider("local", {"root": str(root)})
    ref = provider.create(_spec())
    info = wait_for_stack(provider, ref, State.READY)
    client = _ssh(info)
    _shell_says(client, "sleep 1000 & echo started", "started\r")
    client.close()
    provider.suspend(ref)  # a frozen lab must die too
    state = provider._read(root / ref.name)
    lab = procs.lab_processes(state["id"], state["sshd_pid"], state["sshd_start"])
    assert len(lab) >= 4  # sshd, tmux server, shell, sleep

    provider.delete(ref)
    assert not (root / ref.name).exists() and list(root.iterdir()) == []
    assert all(not procs.alive(p.pid, p.start) for p in lab)
    assert provider.get(ref).state == State.DELETED
    assert provider.list("lxb-local-test") == []


def test_an_sshd_that_cannot_start_fails_the_lab_with_its_message(root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "sshd"
    fake.write_text("#!/bin/sh\necho 'sshd: cannot bind' >&2\nexit 255\n")
    fake.chmod(0o755)
    provider = LocalProvider("local", {"root": str(root), "sshd": str(fake)})
    ref = provider.create(_spec())
    info = wait_for_stack(provider, ref, State.FAILED)
    assert "cannot bind" in info.reason and info.outputs == {}
    provider.delete(ref)
    assert provider.get(ref).state == State.DELETED


@pytest.mark.parametrize(("template", "message"), [
    ("heat_template_version: 2018-08-31\nresources:\n  vm: {type: OS::Nova::Server}\n", "OS::Nova::Server"),
    ("heat_template_version: 2018-08-31\nresources: {}\n", "exactly one"),
    (LOCAL_GOOD_TEMPLATE.replace("{boot_seconds: %(wait)s}", "{sshd_options: {ForceCommand: sh}}"),
     "ForceCommand is set by the local provider"),
])
def test_templates_it_cannot_run_are_refused_at_create(root: Path, template: str, message: str) -> None:
    provider = LocalProvider("local", {"root": str(root)})
    with pytest.raises(PermanentError, match=message):
        provider.create(_spec(template))
    assert not root.exists() or list(root.iterdir()) == []


def test_config_check_names_a_missing_sshd() -> None:
    assert LocalProvider.check_config({"sshd": "/nonexistent/sshd"})[0][0] == "sshd"
    assert LocalProvider.check_config({"root": "/tmp/x"}) == []


def test_tmux_is_what_keeps_the_shell(root: Path) -> None:
    if shutil.which("tmux") is None:
        missing_service("tmux is not installed (apt install tmux): it keeps the shell between sessions")
    provider = LocalProvider("local", {"root": str(root)})
    ref = provider.create(_spec())
    _shell_says(_ssh(wait_for_stack(provider, ref, State.READY)), "echo in-tmux-$TMUX", "in-tmux-/")


def test_a_lab_in_a_deep_directory_still_keeps_its_shell_in_tmux(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        missing_service("tmux is not installed (apt install tmux): it keeps the shell between sessions")
    # Past ~107 bytes a Unix socket path is refused: tmux would fail and the session end at once.
    deep_root = tmp_path / ("deep-" * 12) / "labs"
    provider = LocalProvider("local", {"root": str(deep_root)})
    ref = provider.create(_spec())
    try:
        info = wait_for_stack(provider, ref, State.READY)
        _shell_says(_ssh(info), "echo in-tmux-$TMUX", "in-tmux-/")
    finally:
        provider.delete(ref)
