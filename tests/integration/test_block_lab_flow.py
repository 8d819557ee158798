"""LabBlock's lab handlers through the workbench runtime, with the real labs code and a real engine.

Each test starts a Celery worker and beat on a private Redis against the HTTP cloud
fake (``engine_factory``); the block is driven through ``runtime.handle`` exactly as the
workbench's handler view does. Query counts leave out the workbench's own field-data
table (edx-platform preloads field data; that cost is the runtime's, not the block's).
Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from webob import Request
from xblock.reference.user_service import UserService, XBlockUser

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock import messages
from labxblock.labs.audit import STAFF_TERMINAL
from labxblock.lifecycle import Reason, State
from labxblock.models import Lab, LabEvent
from labxblock.tickets import ReplayGuard, TicketExpired, TicketWrongLearner, verify_ticket
from tests.engine_harness import TEST_TICKET_KEYS, lab_template, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]
PHASE_ORDER = ["queued", "creating", "starting", "ready"]
TRANSACTION_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.IGNORECASE)


def lab_xml(port: int, **attrs: str) -> str:
    """A lab whose template's outputs point at the test's LabPort, so the readiness probe passes."""
    extra = "".join(f' {name}="{value}"' for name, value in attrs.items())
    return (f'<labxblock display_name="Flow lab"{extra}>'
            f"<template><![CDATA[{lab_template(port)}]]></template></labxblock>")


class PlatformUserService(UserService):
    """The user service as edx-platform builds it (xblock_django's DjangoXBlockUserService).

    Under masquerade edx-platform hands the runtime the learner's User object with
    ``real_user`` set to the staff member (courseware/masquerade.py, setup_masquerade).
    """

    def __init__(self, django_user: Any, *, user_is_staff: bool = False) -> None:
        super().__init__()
        self._django_user = django_user
        self._user_is_staff = user_is_staff

    def get_current_user(self) -> XBlockUser:
        xuser = XBlockUser(is_current_user=True)
        user = self._django_user
        if user is not None and user.is_authenticated:
            xuser.opt_attrs.update({
                "edx-platform.is_authenticated": True, "edx-platform.user_id": user.id,
                "edx-platform.username": user.username, "edx-platform.user_is_staff": self._user_is_staff,
            })
        else:
            xuser.opt_attrs["edx-platform.is_authenticated"] = False
        return xuser


@dataclass
class Flow:
    """One block in one workbench runtime (one learner), and the engine behind it."""

    engine: Any
    runtime: WorkbenchRuntime
    block: Any

    def call(self, handler: str, data: dict | None = None) -> dict:
        request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
        return json.loads(self.runtime.handle(self.block, handler, request).body)

    def counted(self, handler: str, data: dict | None = None) -> tuple[dict, list[str]]:
        """The answer and the statements the handler ran.

        Left out: the workbench's field-data table, and transaction control (BEGIN, COMMIT,
        savepoints), which is not a query against a table.
        """
        with CaptureQueriesContext(connection) as ctx:
            answer = self.call(handler, data)
        sql = [q["sql"] for q in ctx.captured_queries
               if "workbench_xblockstate" not in q["sql"] and not TRANSACTION_CONTROL.match(q["sql"])]
        print(f"{handler} {data or ''}: {len(sql)} queries")
        return answer, sql

    def page(self) -> str:
        frag = self.runtime.render(self.block, "student_view")
        return frag.content + json.dumps(frag.json_init_args or {})

    def lab(self) -> Lab:
        return Lab.objects.get()

    def wait_phase(self, phase: str, timeout: float = 30) -> list[str]:
        """Poll ``status`` like the page does; return every phase seen, in order, up to ``phase``."""
        seen: list[str] = []

        def arrived() -> bool:
            answer = self.call("status")
            if not seen or seen[-1] != answer["phase"]:
                seen.append(answer["phase"])
            return answer["phase"] == phase

        wait_for(f"phase {phase}", arrived, timeout=timeout, interval=0.1)
        return seen


@pytest.fixture
def flow(engine_factory) -> Callable[..., Flow]:
    engines: list[Any] = []  # one engine per test, shared by every block the test makes

    def make(student: str = "ada", runtime: WorkbenchRuntime | None = None, **attrs: str) -> Flow:
        if not engines:  # a ticket ttl below the 60 s maximum, so the tests see the ticket carry it
            engines.append(engine_factory(ticket_ttl_seconds=30))
        engine = engines[0]
        runtime = runtime or WorkbenchRuntime(student)
        runtime.id_generator.set_scenario("flow")
        block = runtime.get_block(runtime.parse_xml_string(lab_xml(engine.lab_port.port, **attrs)))
        return Flow(engine, runtime, block)

    return make


def in_order(seen: list[str]) -> bool:
    return [p for p in PHASE_ORDER if p in seen] == seen


def test_status_before_launch_then_launch_moves_through_the_phases_to_ready(flow, cloud_fake) -> None:
    cloud_fake.configure(delays={"create": 2.0})  # long enough to see "creating" from outside
    f = flow()
    f.page()  # the page comes first (the workbench makes its Django user for the student then)
    before, sql = f.counted("status")
    assert before["phase"] == "deleted" and before["ready"] is False and before["poll_ms"] is None
    assert before["label"] == "No lab yet" and len(sql) <= 3, sql
    assert not Lab.objects.exists()  # asking is not launching

    launched, sql = f.counted("status", {"launch": True})
    assert launched["phase"] == "queued" and launched["poll_ms"] <= 1000
    assert launched["elapsed_seconds"] is not None and launched["error"] is None
    # The first launch makes the rows (blueprint and lab); the site's warm pools are read once and
    # cached (models_pool.POOLED_CACHE_KEY), so a later launch skips that query.
    assert len(sql) <= 9, sql

    seen = ["queued", *f.wait_phase("ready")]
    seen = [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p]
    assert "creating" in seen and in_order(seen), seen
    ready, sql = f.counted("status")
    assert ready["ready"] is True and ready["label"] == "Your lab is ready" and ready["poll_ms"] is None
    assert len(sql) <= 3, sql
    # Every page view launches again: idempotent (the same lab, no second create) and cheap.
    again, sql = f.counted("status", {"launch": True})
    assert again["phase"] == "ready" and len(sql) <= 6, sql
    assert Lab.objects.count() == 1 and cloud_fake.counters()["stack_create"] == 1


def test_the_page_shows_an_estimate_once_launches_have_history(flow) -> None:
    first = flow("ada")
    assert first.call("status", {"launch": True})["estimate_seconds"] is None  # no history yet
    first.wait_phase("ready")
    from django.core.cache import cache

    cache.clear()  # the estimate is cached for a minute; a new page view after that sees history
    second = flow("bob")
    answer = second.call("status", {"launch": True})
    assert answer["estimate_seconds"] and 0 < answer["estimate_seconds"] < 30


def test_keepalive_moves_last_seen_and_idle_with_one_update(flow) -> None:
    f = flow(suspend_timeout="300")
    assert f.call("keepalive") == {"ok": False}  # no lab yet: nothing to keep alive, nothing created
    assert not Lab.objects.exists()
    f.call("status", {"launch": True})
    f.wait_phase("ready")
    long_ago = timezone.now() - timedelta(hours=1)
    Lab.objects.update(last_seen_at=long_ago, idle_at=long_ago)

    answer, sql = f.counted("keepalive")
    assert answer == {"ok": True}
    lab = f.lab()
    assert timezone.now() - lab.last_seen_at < timedelta(seconds=5)
    assert lab.idle_at - lab.last_seen_at == timedelta(seconds=300)  # the block's own suspend timeout
    writes = [s for s in sql if not s.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1 and writes[0].lstrip().upper().startswith("UPDATE"), sql
    assert len(sql) <= 2, sql  # the learner's row (user service) and the UPDATE


def test_leave_brings_the_suspension_to_the_grace_and_a_keepalive_takes_it_back(flow) -> None:
    f = flow(suspend_timeout="300")
    assert f.call("leave") == {"ok": False}  # no lab yet: nothing to do
    f.call("status", {"launch": True})
    f.wait_phase("ready")
    answer, sql = f.counted("leave")
    assert answer == {"ok": True}
    writes = [s for s in sql if not s.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1 and writes[0].lstrip().upper().startswith("UPDATE"), sql
    left = f.lab()
    assert left.idle_at - timezone.now() <= timedelta(seconds=30)  # the site's default grace
    assert f.call("keepalive") == {"ok": True}  # the learner is back, or another tab answered
    assert f.lab().idle_at - timezone.now() > timedelta(seconds=290)


def test_reset_deletes_the_stack_and_comes_back_ready_with_a_new_one(flow, cloud_fake) -> None:
    f = flow()
    f.call("status", {"launch": True})
    f.wait_phase("ready")
    old_stack = f.lab().stack_name
    assert f.engine.stacks() == {old_stack}

    answer, sql = f.counted("reset")
    assert answer["phase"] == "rebuilding" and answer["ready"] is False and answer["poll_ms"]
    assert answer["label"] == "Your lab is being prepared again"  # not "Removing your lab"
    assert len(sql) <= 10, sql
    seen = f.wait_phase("ready")
    assert seen[0] in ("rebuilding", "queued", "creating"), seen
    assert cloud_fake.counters()["stack_create"] == 2 and cloud_fake.counters()["stack_delete"] == 1
    assert f.engine.stacks() == {f.lab().stack_name}
    assert LabEvent.objects.filter(lab=f.lab(), reason="reset", actor__startswith="learner:").exists()


def test_a_refused_create_fails_in_learners_words_and_retry_brings_it_up(flow, cloud_fake) -> None:
    cloud_fake.configure(quota_exceeded=True)
    f = flow()
    f.call("status", {"launch": True})
    f.wait_phase("failed")
    failed = f.call("status")
    assert failed["error"] == messages.FAILURES[Reason.CREATE_FAILED]
    assert failed["poll_ms"] is None and failed["ready"] is False
    assert "maximum stacks" in f.lab().status_reason  # the operator sees the cloud's words…
    for word in ("stack", "Request limit", "quota", "400"):  # …the learner does not
        assert word not in failed["error"]

    cloud_fake.configure(quota_exceeded=False)
    answer, sql = f.counted("retry")
    assert answer["phase"] == "queued" and answer["error"] is None
    assert len(sql) <= 10, sql
    f.wait_phase("ready")
    assert f.engine.stacks() == {f.lab().stack_name}


def test_the_learner_comes_from_the_user_service_never_from_the_body(flow) -> None:
    bob = get_user_model().objects.create_user("bob")
    bob_lab = flow("bob")
    bob_lab.call("status", {"launch": True})
    bob_lab.wait_phase("ready")
    bob_row = Lab.objects.get(learner__username="workbench-bob")
    Lab.objects.filter(pk=bob_row.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))
    bob_seen = Lab.objects.get(pk=bob_row.pk).last_seen_at

    ada = flow("ada")
    forged = {"user_id": bob_row.learner_id, "learner": "workbench-bob", "username": "workbench-bob",
              "student_id": "bob", "lab_id": bob_row.pk, "user": bob.pk}
    assert ada.call("status", forged)["phase"] == "deleted"  # ada has no lab, whatever the body says
    assert ada.call("keepalive", forged) == {"ok": False}
    assert ada.call("terminal", forged) == {"error": messages.NOT_READY}
    assert ada.call("reset", forged)["phase"] == "queued"  # ada's own (new) lab, not bob's
    assert Lab.objects.get(pk=bob_row.pk).last_seen_at == bob_seen
    assert Lab.objects.get(pk=bob_row.pk).state == State.READY
    assert set(Lab.objects.values_list("learner__username", flat=True)) == {"workbench-bob", "workbench-ada"}


def test_anonymous_visitors_are_asked_to_sign_in_and_get_no_lab(flow) -> None:
    f = flow()
    f.runtime._services["user"] = PlatformUserService(AnonymousUser())
    for handler, data in (("status", {"launch": True}), ("keepalive", {}), ("leave", {}), ("reset", {}),
                          ("terminal", {})):
        assert f.call(handler, data) == {"error": messages.NOT_SIGNED_IN}
    assert "Please sign in to use this lab." in f.page()
    assert not Lab.objects.exists()


def test_masquerading_staff_see_whose_lab_and_act_on_it(flow) -> None:
    users = get_user_model().objects
    learner = users.create_user("lin", email="lin@example.com")
    staff = users.create_user("sam", email="sam@example.com", is_staff=True)

    as_learner = flow()
    as_learner.runtime._services["user"] = PlatformUserService(learner)
    assert "labxblock-masquerade" not in as_learner.page()
    as_learner.call("status", {"launch": True})
    as_learner.wait_phase("ready")
    lab = as_learner.lab()

    # Staff "view as" lin: edx-platform's runtime gets lin's User carrying real_user = the staff member.
    masked = users.get(pk=learner.pk)
    masked.real_user = staff
    as_staff = flow(runtime=WorkbenchRuntime("sam"))
    as_staff.runtime._services["user"] = PlatformUserService(masked, user_is_staff=True)
    page = as_staff.page()
    assert "labxblock-masquerade" in page
    assert messages.MASQUERADE.format(username="lin") in page
    assert as_staff.call("status")["ready"] is True  # lin's lab, not a new one for sam
    assert "url" in as_staff.call("terminal")  # sam opens lin's terminal: the lab's log says so
    assert LabEvent.objects.filter(lab=lab, reason=STAFF_TERMINAL, actor=f"staff:{staff.pk}").count() == 1
    assert as_staff.call("reset")["phase"] == "rebuilding"
    assert Lab.objects.get().pk == lab.pk and Lab.objects.get().learner_id == learner.pk
    assert LabEvent.objects.filter(lab=lab, reason="reset", actor=f"staff:{staff.pk}").exists()

    # Staff on their own (no masquerade) see no banner and get a lab of their own.
    as_self = flow(runtime=WorkbenchRuntime("sam"))
    as_self.runtime._services["user"] = PlatformUserService(staff, user_is_staff=True)
    assert "labxblock-masquerade" not in as_self.page()
    assert as_self.call("status")["phase"] == "deleted"


def test_terminal_gives_a_ticket_for_this_learner_and_stack_and_no_secret_reaches_the_page(flow) -> None:
    f = flow()
    assert f.call("terminal") == {"error": messages.NOT_READY}
    answers = [f.call("status", {"launch": True})]
    f.wait_phase("ready")
    answers += [f.call("status"), f.call("keepalive")]
    lab = f.lab()
    secrets = [s for s in (lab.private_key, lab.password) if s]
    assert secrets

    answer, sql = f.counted("terminal")
    assert len(sql) <= 2, sql
    url = urlsplit(answer["url"])
    assert url.path.rstrip("/").endswith(f"/console/{lab.stack_name}")
    assert not url.query  # the ticket rides in the fragment, which no server sees
    token = parse_qs(url.fragment)["ticket"][0]
    ticket = verify_ticket(TEST_TICKET_KEYS, token, replay_guard=ReplayGuard(), stack_name=lab.stack_name,
                           learner_id=str(lab.learner_id))
    assert (ticket.host, ticket.port, ticket.protocol) == ("127.0.0.1", f.engine.lab_port.port, "ssh")
    assert ticket.ttl == 30  # the site's ticket_ttl_seconds, honoured by the gateway
    with pytest.raises(TicketExpired):
        verify_ticket(TEST_TICKET_KEYS, token, replay_guard=ReplayGuard(), stack_name=lab.stack_name,
                      now=ticket.issued_at + 31)
    assert not LabEvent.objects.filter(reason=STAFF_TERMINAL).exists()  # the learner's own: no event
    assert ticket.password == lab.password and ticket.private_key == lab.private_key
    other = parse_qs(urlsplit(f.call("terminal")["url"]).fragment)["ticket"][0]
    with pytest.raises(TicketWrongLearner):
        verify_ticket(TEST_TICKET_KEYS, other, replay_guard=ReplayGuard(), stack_name=lab.stack_name,
                      learner_id=str(lab.learner_id + 1))

    shown = f.page() + json.dumps(answers) + json.dumps(answer)
    for secret in secrets:
        assert secret not in shown
