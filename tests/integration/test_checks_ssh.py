"""The check runner against a real OpenSSH server on 127.0.0.1 (tests/services/sshd.py).

Each outcome a learner can meet: pass, fail (with its stderr), a hanging script
stopped by its timeout, megabytes of output, no shebang, bytes that are not
UTF-8, the host key verified or refused, a host behind the lab reached through it.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from labxblock import checks
from labxblock.checks import CheckSpec, CheckTarget, LabUnreachable
from tests.services import sshd as sshd_service
from tests.services.sshd import SshdServer


def target(server: SshdServer, **changes: object) -> CheckTarget:
    base = CheckTarget(host=server.host, port=server.port, username=server.username,
                       private_key=server.private_key, host_key=server.host_key, label="test-lab")
    return dataclasses.replace(base, **changes)


def run_on(where: CheckTarget, *specs: CheckSpec, **kwargs: object) -> list[checks.CheckResult]:
    return checks.run_checks(where, list(specs), connect_timeout=5, **kwargs)


def run(server: SshdServer, *specs: CheckSpec, **kwargs: object) -> list[checks.CheckResult]:
    return run_on(target(server), *specs, **kwargs)


def test_exit_zero_passes_and_others_fail_with_their_stderr(sshd) -> None:
    ok, bad = run(sshd, CheckSpec("ok", "#!/bin/sh\necho fine\n"),
                  CheckSpec("bad", "#!/bin/bash\necho 'nginx is not running' >&2\nexit 3\n", weight=2))
    assert (ok.passed, ok.exit_status, ok.stdout, ok.timed_out) == (True, 0, "fine\n", False)
    assert (bad.passed, bad.exit_status, bad.weight) == (False, 3, 2)
    assert bad.stderr == "nginx is not running\n"
    assert checks.score([ok, bad]) == pytest.approx(1 / 3)


def test_a_script_without_shebang_runs_under_sh(sshd) -> None:
    [result] = run(sshd, CheckSpec("plain", 'test "$(readlink /proc/$$/exe)" = "$(readlink -f /bin/sh)"'))
    assert result.passed, result.stderr


def test_the_shebang_interpreter_and_its_argument_are_used(sshd) -> None:
    script = "#!/usr/bin/env python3\nimport sys\nprint(sys.version_info[0])\n"
    [result] = run(sshd, CheckSpec("python", script.replace("\n", "\r\n")))  # pasted from Windows
    assert (result.passed, result.stdout) == (True, "3\n"), result.stderr


def test_the_script_runs_from_a_private_file_that_is_removed_afterwards(sshd) -> None:
    script = '#!/bin/sh\nstat -c "%a" "$0"; stat -c "%a" "$(dirname "$0")"; echo "$0"\n'
    [result] = run(sshd, CheckSpec("where", script))
    mode, dir_mode, path = result.stdout.split()
    assert (mode, dir_mode) == ("700", "700")
    assert not Path(path).exists() and not Path(path).parent.exists()


def test_a_hanging_script_is_stopped_at_its_timeout_with_its_children(sshd, tmp_path) -> None:
    marker = tmp_path / "child-alive"
    script = f"#!/bin/sh\n(sleep 4; touch {marker}) &\necho started\nsleep 600\n"
    started = time.monotonic()
    [result, after] = run(sshd, CheckSpec("hang", script, timeout=2), CheckSpec("next", "true"))
    elapsed = time.monotonic() - started
    assert result.timed_out and not result.passed
    assert result.stdout == "started\n"
    assert elapsed < 2 + checks.KILL_GRACE_SECONDS + 2  # not the script's 600 s
    assert after.passed  # the next check still runs on the same connection
    time.sleep(3)
    assert not marker.exists()  # the background child went with the script's process group


def test_a_script_that_ignores_term_is_killed(sshd) -> None:
    started = time.monotonic()
    [result] = run(sshd, CheckSpec("stubborn", "#!/bin/bash\ntrap '' TERM\nsleep 600\n", timeout=1))
    assert result.timed_out and result.exit_status in checks.TIMEOUT_STATUSES
    assert time.monotonic() - started < 1 + checks.KILL_GRACE_SECONDS + 2


def test_megabytes_of_output_are_capped_and_the_script_still_finishes(sshd) -> None:
    script = ("#!/bin/sh\nhead -c 5000000 /dev/zero | tr '\\0' o\n"
              "head -c 5000000 /dev/zero | tr '\\0' e >&2\necho END >&2\n")
    [result] = run(sshd, CheckSpec("chatty", script, timeout=20), output_cap=64 * 1024)
    assert result.passed and result.truncated
    assert len(result.stdout) == 64 * 1024 and set(result.stdout) == {"o"}
    assert len(result.stderr) == 64 * 1024 and result.stderr.endswith("eEND\n")  # stderr keeps its tail


def test_output_that_is_not_utf8_is_decoded_with_replacements(sshd) -> None:
    script = "#!/bin/sh\nprintf 'caf\\351 \\377\\n'; printf '\\200' >&2; exit 1"
    [result] = run(sshd, CheckSpec("bytes", script))
    assert result.stdout == "caf\ufffd \ufffd\n" and result.stderr == "\ufffd"
    assert not result.passed


def test_a_mismatched_host_key_is_refused_before_anything_runs(sshd, tmp_path) -> None:
    marker = tmp_path / "ran"
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    with pytest.raises(checks.HostKeyMismatch):
        run_on(target(sshd, host_key=other), CheckSpec("x", f"touch {marker}"))
    with pytest.raises(checks.HostKeyMismatch):  # a host_key output that is no key at all
        run_on(target(sshd, host_key="not a key"), CheckSpec("x", "true"))
    assert not marker.exists()


def test_the_host_key_may_come_as_a_known_hosts_line(sshd) -> None:
    line = f"[{sshd.host}]:{sshd.port} {sshd.host_key} root@lab"
    [result] = run_on(target(sshd, host_key=line), CheckSpec("x", "true"))
    assert result.passed


def test_without_host_key_the_lab_is_accepted_with_a_warning(sshd, caplog) -> None:
    [result] = run_on(target(sshd, host_key=""), CheckSpec("x", "true"))
    assert result.passed
    assert "no host_key output" in caplog.text and "test-lab" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_a_lab_that_does_not_answer_is_unreachable_not_failed(sshd) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(LabUnreachable) as info:
        run_on(target(sshd, port=closed_port, host_key=""), CheckSpec("x", "true"))
    assert info.value.reason == "unreachable"


def test_a_lab_that_accepts_but_never_speaks_times_out_on_connect() -> None:
    with socket.socket() as silent:  # a suspended VM: the port is there, nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        with pytest.raises(LabUnreachable):
            checks.run_checks(CheckTarget("127.0.0.1", silent.getsockname()[1], "x", private_key=""),
                              [CheckSpec("x", "true")], connect_timeout=1)
        # Bounded by connect_timeout, not paramiko's own 15 s banner wait (slack for a busy machine).
        assert time.monotonic() - started < 10


def test_a_wrong_key_is_an_auth_failure(sshd) -> None:
    other_key, _ = sshd_service._keypair()
    with pytest.raises(LabUnreachable) as info:
        run_on(target(sshd, private_key=other_key), CheckSpec("x", "true"))
    assert info.value.reason == "auth"
    assert other_key not in str(info.value)


def test_time_budget_covers_every_wait() -> None:
    specs = [CheckSpec("a", "true", timeout=10), CheckSpec("b", "true", timeout=5, host="db")]
    budget = checks.time_budget(specs, connect_timeout=4)
    assert budget == 4 * 2 + 15 + 2 * (checks.KILL_GRACE_SECONDS + checks.SLACK_SECONDS)


# --- a host behind the lab ---


def _public_key(private_key: str) -> str:
    key = serialization.load_ssh_private_key(private_key.encode(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode()


@pytest.fixture
def host_behind(sshd, tmp_path) -> Iterator[SshdServer]:
    """A second sshd that accepts the lab's key: a server behind the lab, as a template may have."""
    with sshd_service.run_sshd(tmp_path / "db", max_sessions=8) as server:
        (server.workdir / "authorized_keys").write_text(_public_key(sshd.private_key) + "\n")
        yield server


def test_a_check_runs_on_a_host_behind_the_lab(sshd, host_behind) -> None:
    behind = f"{host_behind.username}@127.0.0.1:{host_behind.port}"
    # Which server ran the script: its session's SSH_CONNECTION names the server's port.
    script = "#!/bin/sh\necho $SSH_CONNECTION | cut -d' ' -f4\n"
    on_lab, on_host, again, unreachable = run(
        sshd, CheckSpec("lab", script), CheckSpec("db", script, host=behind),
        CheckSpec("db again", "true", host=behind), CheckSpec("gone", "true", host="127.0.0.1:1"),
    )
    assert on_lab.stdout.strip() == str(sshd.port)
    assert on_host.stdout.strip() == str(host_behind.port) and on_host.passed
    assert again.passed
    assert (unreachable.passed, unreachable.error) == (False, "cannot reach 127.0.0.1:1")


@pytest.mark.parametrize(("spec", "expected"), [
    ("db", ("me", "db", 22)), ("root@db:2222", ("root", "db", 2222)), ("[::1]:23", ("me", "::1", 23)),
    ("admin@10.0.0.5", ("admin", "10.0.0.5", 22)),
])
def test_split_host(spec: str, expected: tuple[str, str, int]) -> None:
    assert checks.split_host(spec, "me") == expected
