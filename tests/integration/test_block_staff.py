"""Course staff's panel through the workbench runtime: who sees it, the page of learners and its
query count, suspend/reset/extend, and a read-only open that is logged. Learners get nothing.

Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock import compat, messages, staff
from labxblock.lifecycle import Desired, State
from labxblock.models import CheckRun, Lab, LabEvent
from labxblock.tickets import ReplayGuard, verify_ticket
from tests.engine_harness import TEST_TICKET_KEYS, active_lab_settings, lab_settings
from tests.integration.test_block_lab_flow import TRANSACTION_CONTROL, PlatformUserService

pytestmark = pytest.mark.django_db
XML = ('<labxblock display_name="Staffed lab">'
       "<template>heat_template_version: 2018-08-31</template></labxblock>")
HANDLERS = (("staff_learners", {"page": 1}), ("staff_action", {"lab_id": 1, "action": "suspend"}),
            ("staff_open", {"lab_id": 1}))


class Panel:
    """One block, seen by one user through the workbench runtime."""

    def __init__(self, user, *, is_staff: bool) -> None:
        self.runtime = WorkbenchRuntime(user.username)
        self.runtime.id_generator.set_scenario("staff")
        self.runtime._services["user"] = PlatformUserService(user, user_is_staff=is_staff)
        self.block = self.runtime.get_block(self.runtime.parse_xml_string(XML))
        self.runtime._patch_xblock(self.block)  # the course run the workbench gives it in handlers

    def call(self, handler: str, data: dict) -> dict:
        request = Request.blank("/", method="POST", body=json.dumps(data).encode())
        return json.loads(self.runtime.handle(self.block, handler, request).body)

    def counted(self, handler: str, data: dict) -> tuple[dict, int]:
        with CaptureQueriesContext(connection) as ctx:
            answer = self.call(handler, data)
        return answer, len([q for q in ctx.captured_queries if "workbench_xblockstate" not in q["sql"]
                            and not TRANSACTION_CONTROL.match(q["sql"])])

    def where(self) -> tuple[str, str]:
        return compat.course_run(self.block), self.block._lab_key()


@pytest.fixture
def users():
    make = get_user_model().objects.create_user
    return {"staff": make("teacher", is_staff=True), "learner": make("lina")}


PROVIDER = {"type": "openstack", "auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "p",
            "project_name": "p", "user_domain_name": "Default", "project_domain_name": "Default",
            "allowed_networks": ["127.0.0.0/8"]}  # the test's lab address is loopback


@pytest.fixture
def lab_site():
    with active_lab_settings(lab_settings({"default": PROVIDER})):
        yield


def labs_for(panel: Panel, count: int, **fields) -> list[Lab]:
    course_run, lab_key = panel.where()
    make = get_user_model().objects.create_user
    return [Lab.objects.create(learner=make(f"learner{i:02d}"), course_run=course_run, lab_key=lab_key,
                               provider="default", state=fields.get("state", State.SUSPENDED),
                               desired=fields.get("desired", Desired.SUSPENDED)) for i in range(count)]


def test_learners_and_masquerading_staff_get_nothing_from_the_staff_handlers(users, lab_site) -> None:
    learner = Panel(users["learner"], is_staff=False)
    labs_for(learner, 1, state=State.READY, desired=Desired.UP)
    for handler, data in HANDLERS:
        assert learner.call(handler, data) == {"error": staff.STAFF_ONLY}
    masked = get_user_model().objects.get(pk=users["learner"].pk)
    masked.real_user = users["staff"]
    as_learner = Panel(masked, is_staff=True)
    for handler, data in HANDLERS:
        assert as_learner.call(handler, data) == {"error": staff.STAFF_ONLY}
    assert Lab.objects.get().desired == Desired.UP and not LabEvent.objects.exists()
    assert 'class="labxblock-staff"' not in learner.runtime.render(learner.block, "student_view").content


def test_staff_see_the_panel_with_its_own_script(users, lab_site) -> None:
    panel = Panel(users["staff"], is_staff=True)
    frag = panel.runtime.render(panel.block, "student_view")
    assert 'class="labxblock-staff"' in frag.content
    assert "data-init='LabXBlockStaff'" in frag.content  # the runtime starts the staff script
    assert '"staff_i18n": {"Learner": "Learner"' in frag.content
    assert any("function LabXBlockStaff" in (r.data or "") for r in frag.resources)


def test_a_page_of_learners_costs_the_same_few_queries_whatever_its_size(users, lab_site) -> None:
    panel = Panel(users["staff"], is_staff=True)
    labs = labs_for(panel, 30)
    first, first_queries = panel.counted("staff_learners", {"page": 1})
    last, last_queries = panel.counted("staff_learners", {"page": 2})
    assert (first["total"], first["pages"], len(first["learners"]), len(last["learners"])) == (30, 2, 25, 5)
    assert [row["username"] for row in first["learners"]][:2] == ["learner00", "learner01"]
    print("queries per page", first_queries, last_queries)
    assert first_queries == last_queries == 3  # count, page (score joined), events; nothing per row
    assert panel.call("staff_learners", {"page": 99})["page"] == 2  # past the end: the last page
    assert {row["lab_id"] for row in first["learners"] + last["learners"]} == {lab.pk for lab in labs}


def test_each_row_has_state_last_seen_up_time_this_month_and_last_score(users, lab_site) -> None:
    panel = Panel(users["staff"], is_staff=True)
    (lab,) = labs_for(panel, 1, state=State.READY, desired=Desired.UP)
    now = timezone.now()
    seen = now - timedelta(minutes=3)
    Lab.objects.filter(pk=lab.pk).update(last_seen_at=seen)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    LabEvent.record(lab, actor="t", from_state="", to_state=State.CREATING, at=month - timedelta(days=3))
    LabEvent.record(lab, actor="t", from_state="creating", to_state=State.READY, at=month - timedelta(days=2))
    for score, minutes in ((0.25, 20), (0.75, 10)):
        CheckRun.objects.create(lab=lab, learner=lab.learner, course_run=lab.course_run, lab_key=lab.lab_key,
                                usage_id=panel.block._usage_key(), state="done", score=score, actor="t",
                                started_at=now - timedelta(minutes=minutes), deadline_at=now,
                                finished_at=now - timedelta(minutes=minutes - 1))
    (row,) = panel.call("staff_learners", {})["learners"]
    up_hours = round((now - month).total_seconds() / 3600, 2)  # up since before the month began
    assert (row["username"], row["state"], row["phase"]) == ("learner00", "ready", "ready")
    assert row["score"] == 0.75  # the latest finished run
    assert row["last_seen_at"] == seen.isoformat() and abs(row["up_hours"] - up_hours) < 0.01
    assert row["can_open"] is True


@pytest.mark.parametrize(("state", "desired"), [
    (State.READY, Desired.UP), (State.SUSPENDED, Desired.SUSPENDED), (State.REQUESTED, Desired.UP),
    (State.DELETED, Desired.SUSPENDED), (State.DELETING, Desired.DELETED), (State.FAILED, Desired.UP),
])
def test_a_row_offers_exactly_the_actions_that_would_change_its_lab(users, lab_site, state, desired) -> None:
    """No button that can only answer "unchanged": each offered action changes the lab, the others do not."""
    panel = Panel(users["staff"], is_staff=True)
    (lab,) = labs_for(panel, 1, state=state, desired=desired)
    (row,) = panel.call("staff_learners", {})["learners"]
    for action in ("suspend", "reset", "extend"):  # grant: only with a time budget (its own tests)
        with transaction.atomic():
            answer = panel.call("staff_action", {"lab_id": lab.pk, "action": action})
            transaction.set_rollback(True)  # each action tried on the lab as the row showed it
        assert answer["changed"] is (action in row["actions"]), (action, answer, row["actions"])
    assert "grant" not in row["actions"]


def test_staff_suspend_reset_and_extend_go_through_the_lifecycle_logged_as_staff(users, lab_site) -> None:
    panel = Panel(users["staff"], is_staff=True)
    up, paused = labs_for(panel, 2, state=State.READY, desired=Desired.UP)
    actor = f"staff:{users['staff'].pk}"
    assert panel.call("staff_action", {"lab_id": up.pk, "action": "suspend"}) == {"changed": True, "why": ""}
    assert Lab.objects.get(pk=up.pk).desired == Desired.SUSPENDED
    assert panel.call("staff_action", {"lab_id": paused.pk, "action": "reset"})["changed"] is True
    assert Lab.objects.get(pk=paused.pk).state == State.DELETING
    panel.call("staff_action", {"lab_id": up.pk, "action": "extend"})
    assert Lab.objects.get(pk=up.pk).delete_by > timezone.now() + timedelta(days=6)
    assert set(LabEvent.objects.values_list("actor", flat=True)) == {actor}
    other = Lab.objects.create(learner=users["learner"], course_run="course-v1:O+Else+R", lab_key="x")
    refused = {"error": staff.NO_SUCH_LEARNER_LAB}
    assert panel.call("staff_action", {"lab_id": other.pk, "action": "suspend"}) == refused
    assert panel.call("staff_action", {"lab_id": up.pk, "action": "delete"}) == refused  # not a staff action
    assert Lab.objects.get(pk=other.pk).desired == Desired.UP


def test_staff_open_a_learners_ready_lab_read_only_and_the_open_is_logged(users, lab_site) -> None:
    panel = Panel(users["staff"], is_staff=True)
    ready, paused = labs_for(panel, 2, state=State.READY, desired=Desired.UP)
    Lab.objects.filter(pk=ready.pk).update(ip="127.0.0.1", port=2222, stack_user="training",
                                           private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nk\n")
    Lab.objects.filter(pk=paused.pk).update(state=State.SUSPENDED, desired=Desired.SUSPENDED)
    answer = panel.call("staff_open", {"lab_id": ready.pk})
    url = urlsplit(answer["url"])
    assert url.path == f"/console/{ready.stack_name}/" and "ro=1" in url.fragment
    token = re.search(r"ticket=([^&]+)", url.fragment)[1]
    ticket = verify_ticket(TEST_TICKET_KEYS, token, replay_guard=ReplayGuard(), stack_name=ready.stack_name)
    assert ticket.read_only is True and ticket.learner_id == f"staff:{users['staff'].pk}"
    assert "PRIVATE KEY" not in json.dumps(answer)
    event = LabEvent.objects.get(lab=ready)
    assert (event.actor, event.reason) == (f"staff:{users['staff'].pk}", "opened read-only by course staff")
    assert panel.call("staff_open", {"lab_id": paused.pk}) == {"error": "Your lab is not ready yet."}
    assert not LabEvent.objects.filter(lab=paused).exists()


def test_a_lab_at_a_refused_address_is_not_opened_and_nothing_is_logged(users) -> None:
    provider = {**PROVIDER, "allowed_networks": ["10.0.0.0/8"]}
    with active_lab_settings(lab_settings({"default": provider})):
        panel = Panel(users["staff"], is_staff=True)
        (ready,) = labs_for(panel, 1, state=State.READY, desired=Desired.UP)
        Lab.objects.filter(pk=ready.pk).update(ip="127.0.0.1", port=2222, stack_user="training")
        answer = panel.call("staff_open", {"lab_id": ready.pk})
    assert answer == {"error": messages.ADDRESS_REFUSED}
    assert not LabEvent.objects.exists()


def test_staff_see_each_learners_lab_time_left_and_grant_more_logged_as_staff(users, lab_site) -> None:
    panel = Panel(users["staff"], is_staff=True)
    budgeted, free = labs_for(panel, 2)
    Lab.objects.filter(pk=budgeted.pk).update(budget_limits={"unit": 7200.0}, used_seconds=6300.0)
    rows = {row["lab_id"]: row for row in panel.call("staff_learners", {})["learners"]}
    assert (rows[budgeted.pk]["budget_hours"], rows[budgeted.pk]["left_hours"]) == (2.0, 0.25)
    assert (rows[free.pk]["budget_hours"], rows[free.pk]["left_hours"]) == (None, None)
    answer = panel.call("staff_action", {"lab_id": budgeted.pk, "action": "grant", "hours": 1.5})
    assert answer == {"changed": True, "why": ""}
    rows = {row["lab_id"]: row for row in panel.call("staff_learners", {})["learners"]}
    assert rows[budgeted.pk]["left_hours"] == 1.75
    event = LabEvent.objects.get(lab=budgeted)
    assert event.actor == f"staff:{users['staff'].pk}"
    assert event.reason == "time budget: 1.5 h granted, 1.75 h left"
    assert panel.call("staff_action", {"lab_id": free.pk, "action": "grant", "hours": 1}) == {
        "changed": False, "why": "no time budget"}
    for hours in (0, -1, "2", None, 1001):
        assert panel.call("staff_action", {"lab_id": budgeted.pk, "action": "grant", "hours": hours}) == {
            "error": "Give a number of hours above 0 and at most 1000."}
    assert LabEvent.objects.count() == 1
