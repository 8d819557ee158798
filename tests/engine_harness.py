"""What engine tests and benchmarks share: a stand-in lab port, templates, settings, waiting.

Workers are real Celery processes on the private Redis; the cloud is the HTTP
cloud fake; the database is the test run's (SQLite or MariaDB). Settings reach the
workers through ``LABXBLOCK_TEST_LAB_SETTINGS`` (read by tests/settings.py) and
this process through ``override_settings``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.test import override_settings

from labxblock.conf import reset_settings_cache
from labxblock.labs import LabSpec, ProviderChoice
from labxblock.lifecycle import DEFAULT_POLICY, State
from labxblock.providers.base import Provider, StackInfo, StackRef

TEST_SECRET_KEYS = ["sUKLjyest-zChe4V4e_wNt5HkYZYutVrDajwRCTDQGg="]
TEST_TICKET_KEYS = ["5EIJxo4ocC-Og6iqMy7YGgl3HaK7pvOjzhcL4GO_KdE="]


class LabPort:
    """A listening TCP port on 127.0.0.1 that accepts and drops connections: the lab's service.

    ``accepted`` counts the connections: a test that a refused address is never contacted reads it.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


# The lab port speaks no SSH, so its template gives the host key, as a good template does: the
# readiness probe is then a plain connect (without one, an SSH lab must answer a key exchange).
LAB_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def lab_template(port: int) -> str:
    """A HOT template honouring the contract, whose lab answers on ``port`` of 127.0.0.1."""
    return f"""heat_template_version: 2018-08-31
parameters:
  run:
    type: string
resources:
  password:
    type: OS::Heat::RandomString
outputs:
  public_ip:
    value: 127.0.0.1
  port:
    value: {port}
  private_key:
    value: {{get_attr: [password, value]}}
  password:
    value: {{get_attr: [password, value]}}
  host_key:
    value: {LAB_HOST_KEY}
"""


def rig_lab_template(port: int, create_secs: float = 3, resume_secs: float = 1) -> str:
    """The same contract on the rig's real Heat: its ``LabXBlock::Test::Server`` takes ``create_secs``
    to create and ``resume_secs`` to resume (real time, as a server would), and the lab answers on
    ``port`` of 127.0.0.1."""
    return f"""heat_template_version: 2021-04-16
parameters:
  run:
    type: string
    default: ""
resources:
  password:
    type: OS::Heat::RandomString
    properties: {{length: 16}}
  server:
    type: LabXBlock::Test::Server
    properties: {{create_secs: {create_secs}, suspend_secs: 1, resume_secs: {resume_secs}, delete_secs: 1}}
outputs:
  public_ip: {{value: {{get_attr: [server, public_ip]}}}}
  port: {{value: {port}}}
  private_key: {{value: {{get_attr: [server, private_key]}}}}
  password: {{value: {{get_attr: [password, value]}}}}
  host_key: {{value: "{LAB_HOST_KEY}"}}
"""


def lab_spec(port: int, *, lab_key: str = "lab", providers: tuple[str, ...] = ("default",),
             capacities: dict[str, int] | None = None, suspend_timeout: int | None = None) -> LabSpec:
    template = lab_template(port)
    choices = tuple(ProviderChoice(name, (capacities or {}).get(name), template) for name in providers)
    return LabSpec(course_run="course-v1:Org+Lab+Run", lab_key=lab_key, providers=choices,
                   suspend_timeout=suspend_timeout)


def lab_settings(providers: dict[str, dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A complete XBLOCK_SETTINGS["labxblock"] with quick ticks and short deadlines."""
    settings = {
        "install_id": "test",
        "providers": providers,
        "secret_keys": TEST_SECRET_KEYS,
        "ticket_keys": TEST_TICKET_KEYS,
        "terminal_mode": "console",
        "gateway_url": "ws://127.0.0.1:8765/",
        "reconcile_interval_seconds": 1,
        "suspend_idle_interval_seconds": 1,
        "reap_interval_seconds": 5,
        "retry_backoff_seconds": 2,
        "retry_backoff_max_seconds": 8,
        "state_deadline_seconds": {"requested": 20, "creating": 60, "starting": 20, "suspending": 20,
                                   "resuming": 20, "deleting": 30},
    }
    settings.update(overrides)
    return settings


@contextlib.contextmanager
def active_lab_settings(settings: dict[str, Any]) -> Iterator[None]:
    """Use ``settings`` here and in every worker started inside the block."""
    os.environ["LABXBLOCK_TEST_LAB_SETTINGS"] = json.dumps(settings)
    reset_settings_cache()
    try:
        with override_settings(XBLOCK_SETTINGS={"labxblock": settings}):
            yield
    finally:
        os.environ.pop("LABXBLOCK_TEST_LAB_SETTINGS", None)
        reset_settings_cache()


def wait_for(
    what: str,
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.2,
    explain: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``predicate`` until it is truthy; fail naming ``what`` after ``timeout`` seconds.

    ``explain``'s answer, if given, goes into the failure message (say, where each lab got stuck).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; {explain()}" if explain else ""
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {value!r}{seen})"
            )
        time.sleep(interval)


def time_to(what: str, predicate: Callable[[], Any], budget: float,
            explain: Callable[[], Any] | None = None) -> float:
    """Seconds until ``predicate`` holds; fail naming ``what`` if it takes longer than ``budget``."""
    started = time.monotonic()
    wait_for(what, predicate, budget, explain=explain)
    return time.monotonic() - started


class LearnerView:
    """What learners read about their labs while a test runs: the status handler's phase and words.

    ``look()`` records each lab's (phase, label) as ``messages.status_answer`` renders it for the
    page; ``seen[lab_id]`` is every distinct one in order. Use it in a ``wait_for`` predicate to
    watch a fault from the learner's seat.
    """

    def __init__(self, ids: list[int]) -> None:
        self.ids = list(ids)
        self.seen: dict[int, list[tuple[str, str]]] = {lab_id: [] for lab_id in self.ids}

    def look(self) -> dict[int, tuple[str, str]]:
        from django.utils import timezone

        from labxblock import messages
        from labxblock.labs.learner import status_of
        from labxblock.models import Lab

        now = timezone.now()
        shown = {}
        for lab in Lab.objects.filter(pk__in=self.ids):
            answer = messages.status_answer(status_of(lab), now, lambda text: text)
            shown[lab.pk] = (answer["phase"], answer["label"])
            if not self.seen[lab.pk] or self.seen[lab.pk][-1] != shown[lab.pk]:
                self.seen[lab.pk].append(shown[lab.pk])
        return shown

    def phases(self) -> set[str]:
        """Every phase any of the labs showed."""
        return {phase for seen in self.seen.values() for phase, _ in seen}


def recovery_budget(settings: dict[str, Any], cloud_seconds: float) -> float:
    """How long a lab whose job was lost may take to converge: the acceptance window, two reconcile
    intervals (the pass that notices, the pass that follows the reissued call) and the cloud's own time."""
    window = settings.get("acceptance_window_seconds", DEFAULT_POLICY.acceptance_window_seconds)
    return window + 2 * settings["reconcile_interval_seconds"] + cloud_seconds


def wait_for_stack(provider: Provider, ref: StackRef, state: State, timeout: float = 10) -> StackInfo:
    """Poll the provider's ``get`` until the stack is in ``state``; fail showing its last answer."""
    last: list[StackInfo] = []

    def reached() -> StackInfo | None:
        last[:] = [provider.get(ref)]
        return last[0] if last[0].state == state else None

    return wait_for(f"stack {ref.name} {state.value}", reached, timeout, 0.05, explain=lambda: last[-1])
