"""Checks the learner cannot forge or read: a check account beside the learner's, on a real sshd.

The ``accounts_sshd`` fixture makes two real Unix users (root, as in CI): the
learner, whose keys are in their own ``~/.ssh/authorized_keys``, and a check
account whose key sits in a root-owned file. Each attack is first shown to work
against checks run as the learner (so the test can fail), then to fail against
the check account.
"""

from __future__ import annotations

import json
import secrets
import select
import time

import paramiko
import pytest

from labxblock import checks
from labxblock.checks import CheckSpec, CheckTarget
from labxblock.labs.checking import login_of
from labxblock.models import Lab
from tests.services.sshd import Account, AccountsServer

FAILING = CheckSpec("not done", "#!/bin/sh\necho 'nginx is not running' >&2\nexit 1\n")
SECRET = f"author-secret-{secrets.token_hex(8)}"  # what an author's script may hold: a token, a password
SECRET_SCRIPT = f"#!/bin/sh\n# {SECRET}\nsleep 2\n"
SNOOP_SECONDS = 5
# A learner's process watching while a check runs: every readable check script in /tmp, and every
# command line on the machine ("[a]uthor" so that grep's own command line does not match itself).
SNOOP = rf"""
echo watching
end=$(( $(date +%s) + {SNOOP_SECONDS} ))
seen=" "
while [ "$(date +%s)" -lt "$end" ]; do
  for f in /tmp/*/check; do
    case "$seen" in *" $f "*) continue ;; esac
    if [ -s "$f" ] && sed 's/^/file: /' "$f" 2>/dev/null; then seen="$seen$f "; fi
  done
  cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep '[a]uthor-secret' | sed 's/^/argv: /'
  sleep 0.05
done
"""


def as_account(server: AccountsServer, account: Account) -> CheckTarget:
    return CheckTarget(host=server.host, port=server.port, username=account.name,
                       private_key=account.private_key, host_key=server.host_key, label="test-lab")


def run(where: CheckTarget, *specs: CheckSpec) -> list[checks.CheckResult]:
    return checks.run_checks(where, list(specs), connect_timeout=5)


def learner_login(server: AccountsServer) -> paramiko.SSHClient:
    """The learner at their own shell (what the terminal gives them)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(server.host, port=server.port, username=server.learner.name,
                   pkey=checks._private_key(server.learner.private_key), allow_agent=False,
                   look_for_keys=False, timeout=5)
    return client


def learner_types(server: AccountsServer, command: str) -> int:
    client = learner_login(server)
    try:
        _, stdout, _ = client.exec_command(command, timeout=10)
        return stdout.channel.recv_exit_status()
    finally:
        client.close()


def snooped_while_checking(server: AccountsServer, checker: CheckTarget) -> str:
    """What a learner's process saw of a check that ``checker`` ran meanwhile."""
    client = learner_login(server)
    try:
        channel = client.get_transport().open_session()
        channel.exec_command(SNOOP)
        seen = b""
        while b"watching\n" not in seen:
            select.select([channel], [], [], 5)
            seen += channel.recv(4096)
        [result] = run(checker, CheckSpec("holds a secret", SECRET_SCRIPT, timeout=10))
        assert result.passed, result
        deadline = time.monotonic() + SNOOP_SECONDS + 10
        while not channel.exit_status_ready() or channel.recv_ready():
            assert time.monotonic() < deadline, "the snooping process did not end"
            select.select([channel], [], [], 1)
            if channel.recv_ready():
                seen += channel.recv(65536)
        return seen.decode(errors="replace")
    finally:
        client.close()


def test_a_forced_exit_0_on_the_learners_key_forges_their_checks_but_not_the_check_accounts(
    accounts_sshd: AccountsServer,
) -> None:
    server = accounts_sshd
    learner, checker = as_account(server, server.learner), as_account(server, server.checker)
    [before] = run(learner, FAILING)
    assert not before.passed

    # From their own shell, as any learner can: every later login with their key runs "exit 0".
    assert learner_types(server, """sed -i 's/^/command="exit 0" /' ~/.ssh/authorized_keys""") == 0
    assert server.learner_keys.read_text().startswith('command="exit 0" ssh-ed25519 ')
    # The forced command exits without reading the script: small (a race) or larger than the SSH
    # window (always), its exit status is the answer, not "lost the connection to the lab".
    big = CheckSpec("not done, long", FAILING.script + "#" * 4_000_000 + "\n")
    forged = run(learner, FAILING, big)
    assert [r.passed for r in forged] == [True, True]  # the attack is real: the learner's to forge

    who = CheckSpec("runs as the check account", f'test "$(id -un)" = {server.checker.name}')
    failing, ran_as = run(checker, FAILING, who)
    assert (failing.passed, failing.exit_status, failing.stderr) == (False, 1, "nginx is not running\n")
    assert ran_as.passed, ran_as.stderr


def test_a_learner_process_cannot_read_a_script_the_check_account_runs(accounts_sshd: AccountsServer) -> None:
    server = accounts_sshd
    # The probe works: a script run as the learner sits in the learner's own directory.
    assert f"file: # {SECRET}" in snooped_while_checking(server, as_account(server, server.learner))

    seen = snooped_while_checking(server, as_account(server, server.checker))
    assert SECRET not in seen, seen
    assert "watching" in seen


def test_without_a_check_account_checks_still_run_as_the_learner(accounts_sshd: AccountsServer) -> None:
    server = accounts_sshd
    who = CheckSpec("runs as the learner", f'test "$(id -un)" = {server.learner.name}')
    ran_as, failing = run(as_account(server, server.learner), who, FAILING)
    assert ran_as.passed, ran_as.stderr
    assert (failing.passed, failing.stderr) == (False, "nginx is not running\n")


def test_the_script_is_never_on_a_command_line() -> None:
    spec = CheckSpec("holds a secret", SECRET_SCRIPT)
    assert SECRET not in checks.remote_command(spec)


@pytest.mark.parametrize(
    ("outputs", "check_key", "expected"),
    [
        # The check account alone: never the learner's password.
        ({"check_user": "checker"}, "CHECK KEY", ("checker", "CHECK KEY", "")),
        ({}, "", ("training", "LEARNER KEY", "learner password")),
        ({"check_user": "checker"}, "", None),  # half an account: refused, not run as the learner
        ({}, "CHECK KEY", None),
    ],
)
def test_who_checks_log_in_as(outputs, check_key, expected) -> None:
    secret_outputs = json.dumps({"check_private_key": check_key}) if check_key else ""
    lab = Lab(stack_user="training", private_key="LEARNER KEY", password="learner password",
              secret_outputs=secret_outputs, outputs=outputs)
    login = login_of(lab)
    assert (None if login is None else (login.username, login.private_key, login.password)) == expected
    if login is not None:
        assert "KEY" not in repr(login) and "password" not in repr(login)
