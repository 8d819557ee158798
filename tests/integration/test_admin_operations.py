"""Operators' actions, filters and pages in the real Django admin, through Django's test client.

Each action is POSTed as the admin's own form does; the test reads the row and its event log.
The last test lets a real worker carry out an action an operator took in the admin.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from labxblock import labs
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import lab_spec, wait_for

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/labxblock/lab/"
RUN = "course-v1:Org+Ops+Run"


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def make_lab(name: str, course_run: str = RUN, **fields) -> Lab:
    user = get_user_model().objects.create_user(username=name)
    fields.setdefault("state", State.READY)
    fields.setdefault("provider", "default")
    return Lab.objects.create(learner=user, course_run=course_run, lab_key="k", **fields)


def post_action(client, action: str, labs_: list[Lab], **extra):
    data = {"action": action, "_selected_action": [lab.pk for lab in labs_], "index": 0, **extra}
    return client.post(CHANGELIST, data)


def last_event(lab: Lab) -> LabEvent:
    return LabEvent.objects.filter(lab=lab).order_by("-at", "-id").first()


def test_suspend_action_sets_desired_and_logs_the_operator(client, operator) -> None:
    ready, paused = make_lab("ada"), make_lab("bob", state=State.SUSPENDED, desired=Desired.SUSPENDED)
    response = post_action(client, "suspend_labs", [ready, paused])
    assert response.status_code == 302
    ready.refresh_from_db()
    paused.refresh_from_db()
    assert (ready.desired, ready.state) == (Desired.SUSPENDED, State.READY)  # the reconciler suspends it
    event = last_event(ready)
    assert (event.actor, event.reason) == (f"operator:{operator.pk}", "suspend requested")
    assert not LabEvent.objects.filter(lab=paused).exists()  # nothing to do: left as it was
    messages = [str(m) for m in response.wsgi_request._messages]
    assert "suspend: 1 lab(s) on their way." in messages
    assert "suspend: 1 lab(s) left as they were: not meant to be up." in messages


def test_resume_action_wants_the_lab_up_and_pushes_its_idle_time(client, operator) -> None:
    lab = make_lab("cy", state=State.SUSPENDED, desired=Desired.SUSPENDED, idle_at=timezone.now())
    post_action(client, "resume_labs", [lab])
    lab.refresh_from_db()
    assert lab.desired == Desired.UP
    assert lab.idle_at > timezone.now() + timedelta(seconds=60)  # not suspended again on the next sweep
    assert last_event(lab).actor == f"operator:{operator.pk}"


def test_reset_asks_first_then_deletes_the_stack_to_build_it_afresh(client, operator) -> None:
    lab = make_lab("dee")
    page = post_action(client, "reset_labs", [lab])
    assert page.status_code == 200 and b"Reset 1 lab(s)?" in page.content
    assert Lab.objects.get(pk=lab.pk).state == State.READY  # nothing happened yet
    post_action(client, "reset_labs", [lab], confirm="yes")
    lab.refresh_from_db()
    assert (lab.state, lab.desired) == (State.DELETING, Desired.UP)
    event = last_event(lab)
    assert (event.actor, event.reason, event.to_state) == (f"operator:{operator.pk}", "reset", "deleting")


def test_delete_action_marks_the_lab_for_deletion_after_confirmation(client, operator) -> None:
    lab = make_lab("eve")
    post_action(client, "delete_labs", [lab], confirm="yes")
    lab.refresh_from_db()
    assert lab.desired == Desired.DELETED and lab.state == State.READY
    assert last_event(lab).reason == "delete requested"


def test_retry_action_only_touches_failed_labs(client, operator) -> None:
    failed = make_lab("fay", state=State.FAILED, status_reason="create_failed: quota", attempts=5)
    fine = make_lab("gus")
    post_action(client, "retry_labs", [failed, fine])
    failed.refresh_from_db()
    assert failed.state == State.REQUESTED and failed.attempts == 0 and failed.status_reason == ""
    assert last_event(failed).actor == f"operator:{operator.pk}"
    assert not LabEvent.objects.filter(lab=fine).exists()


def test_extend_action_moves_the_delete_date_by_the_days_given(client, operator) -> None:
    before = timezone.now() + timedelta(days=2)
    lab = make_lab("hal", delete_by=before)
    page = post_action(client, "extend_labs", [lab], confirm="yes", days="0")
    assert b"Give a number of days" in page.content  # asked again, nothing changed
    post_action(client, "extend_labs", [lab], confirm="yes", days="30")
    lab.refresh_from_db()
    assert lab.delete_by == before + timedelta(days=30)
    assert last_event(lab).reason.startswith("delete date extended to ")


def test_grant_action_adds_the_hours_given_to_each_labs_time_budget(client, operator) -> None:
    lab = make_lab("kit", budget_limits={"unit": 3600.0}, used_seconds=3600.0)
    free = make_lab("lou")
    page = post_action(client, "grant_labs", [lab, free])
    assert page.status_code == 200 and b"Grant lab time to 2 lab(s)?" in page.content
    assert b"Give a number of hours" in post_action(client, "grant_labs", [lab], confirm="yes",
                                                    hours="0").content
    response = post_action(client, "grant_labs", [lab, free], confirm="yes", hours="3")
    assert Lab.objects.get(pk=lab.pk).budget_granted_seconds == 3 * 3600
    assert last_event(lab).actor == f"operator:{operator.pk}"
    assert last_event(lab).reason == "time budget: 3 h granted, 3 h left"
    messages = [str(m) for m in response.wsgi_request._messages]
    assert "grant: 1 lab(s) left as they were: no time budget." in messages
    client.post(f"{CHANGELIST}{lab.pk}/operate/grant/", {"hours": "2"})  # the button on its page
    assert Lab.objects.get(pk=lab.pk).budget_granted_seconds == 5 * 3600


def test_buttons_on_a_labs_page_post_through_the_lifecycle(client, operator) -> None:
    lab = make_lab("ivy", private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nsecretkeymaterial\n")
    page = client.get(f"{CHANGELIST}{lab.pk}/change/")
    assert page.status_code == 200
    assert b"secretkeymaterial" not in page.content  # secrets never shown
    assert f'action="{CHANGELIST}{lab.pk}/operate/suspend/"'.encode() in page.content
    assert client.get(f"{CHANGELIST}{lab.pk}/operate/suspend/").status_code == 405  # POST only
    response = client.post(f"{CHANGELIST}{lab.pk}/operate/suspend/")
    assert response.status_code == 302 and response["Location"] == f"{CHANGELIST}{lab.pk}/change/"
    assert Lab.objects.get(pk=lab.pk).desired == Desired.SUSPENDED
    client.post(f"{CHANGELIST}{lab.pk}/operate/extend/", {"days": "3"})
    assert last_event(lab).reason.startswith("delete date extended")
    assert client.post(f"{CHANGELIST}{lab.pk}/operate/explode/").status_code == 403


def test_the_lifecycle_fields_cannot_be_edited_by_hand(client, operator) -> None:
    lab = make_lab("jon")
    page = client.get(f"{CHANGELIST}{lab.pk}/change/").content.decode()
    for name in ("desired", "state", "provider", "delete_by"):
        assert f'name="{name}"' not in page
    assert client.get(f"{CHANGELIST}{lab.pk}/delete/").status_code == 403  # rows go by the lifecycle


def test_a_viewer_without_change_permission_cannot_operate(client) -> None:
    viewer = get_user_model().objects.create_user("watcher", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_lab"))
    client.force_login(viewer)
    lab = make_lab("kim")
    page = client.get(CHANGELIST).content.decode()
    assert "suspend_labs" not in page
    post_action(client, "suspend_labs", [lab])
    assert client.post(f"{CHANGELIST}{lab.pk}/operate/suspend/").status_code == 403
    assert Lab.objects.get(pk=lab.pk).desired == Desired.UP


def listed(client, query: str) -> set[str]:
    page = client.get(f"{CHANGELIST}?{query}").content.decode()
    return set(re.findall(r"lab-test-[0-9a-f]{16}", page))


def test_filters_by_course_run_provider_state_failed_and_stuck(client, operator) -> None:
    past, future = timezone.now() - timedelta(minutes=5), timezone.now() + timedelta(minutes=5)
    stuck = make_lab("stuck", state=State.CREATING, deadline_at=past)
    moving = make_lab("moving", state=State.CREATING, deadline_at=future)
    failed = make_lab("failed", state=State.FAILED, deadline_at=past)  # past, but failed is at rest
    other = make_lab("other", course_run="course-v1:Org+Other+Run", provider="os2")
    assert listed(client, "stuck=past-deadline") == {stuck.stack_name}
    assert listed(client, "failed=failed") == {failed.stack_name}
    assert listed(client, "provider=os2") == {other.stack_name}
    in_run = {stuck.stack_name, moving.stack_name, failed.stack_name}
    assert listed(client, urlencode({"course_run": RUN})) == in_run
    assert listed(client, "state=creating") == {stuck.stack_name, moving.stack_name}


@pytest.mark.redis
@pytest.mark.slow
def test_a_worker_carries_out_what_the_operator_asked(engine_factory, transactional_db, client) -> None:
    engine = engine_factory()
    operator = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(operator)
    learner = engine.user("lena")
    spec = lab_spec(engine.lab_port.port)
    labs.request_launch(learner, spec, actor=f"learner:{learner.pk}")
    lab = wait_for("lab ready", lambda: Lab.objects.filter(state=State.READY).first(), timeout=30)
    post_action(client, "suspend_labs", [lab])
    wait_for("lab suspended by a worker", lambda: Lab.objects.get(pk=lab.pk).state == State.SUSPENDED,
             timeout=30)
    (stack,) = engine.cloud.cloud.listing(["labxblock-test"])
    assert stack.status(timezone.now().timestamp())[0] == "SUSPEND_COMPLETE"
    actors = list(LabEvent.objects.filter(lab=lab).values_list("actor", "to_state"))
    assert (f"operator:{operator.pk}", "ready") in actors  # the decision, then the workers' moves
    assert actors[-1][1] == "suspended"


def test_the_usage_page_shows_a_table_an_escaped_chart_and_a_csv(client, operator) -> None:
    run = "course-v1:Org+<script>alert(1)</script>+Run"
    lab = make_lab("uma", course_run=run)
    start = timezone.now() - timedelta(hours=3)
    LabEvent.record(lab, actor="t", from_state="", to_state=State.CREATING, at=start)
    LabEvent.record(lab, actor="t", from_state="creating", to_state=State.SUSPENDED,
                    at=start + timedelta(hours=2))
    since = (start - timedelta(days=1)).date().isoformat()
    query = urlencode({"since": since, "course_run": run, "by": "learner"})
    page = client.get(f"{CHANGELIST}usage/?{query}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<rect ") == 48 and "Labs up at once in" in html
    assert re.search(r"<td>uma</td><td>2\.0</td><td>1</td>", html)
    csv_page = client.get(f"{CHANGELIST}usage/?{query}&format=csv")
    assert csv_page["Content-Type"].startswith("text/csv")
    lines = csv_page.content.decode().splitlines()
    assert lines[0].startswith("course_run,lab_key,learner,up_hours") and ",uma,2.0,1,0,0,0,,USD" in lines[1]
    assert b"Usage and cost" in client.get(CHANGELIST).content  # linked from the list


def test_an_operator_sets_a_warm_pool_in_the_admin_and_an_unreadable_schedule_is_refused(
        client, operator) -> None:
    from labxblock.models import WarmPool

    form = {"course_run": RUN, "lab_key": "k", "size": "2", "keep": "suspended", "time_zone": "UTC"}
    refused = client.post("/admin/labxblock/warmpool/add/", {**form, "schedule": "weekdays"})
    assert refused.status_code == 200 and "expected a window such as" in refused.content.decode()
    assert not WarmPool.objects.exists()
    made = client.post("/admin/labxblock/warmpool/add/", {**form, "schedule": "mon-fri 08:00-18:00"})
    assert made.status_code == 302
    pool = WarmPool.objects.get()
    assert (pool.size, pool.schedule) == (2, "mon-fri 08:00-18:00")
    Lab.objects.create(course_run=RUN, lab_key="k", pool=pool, state=State.SUSPENDED,
                       desired=Desired.SUSPENDED, provider="default")
    page = client.get("/admin/labxblock/warmpool/").content.decode()
    assert "1 suspended" in page and "learned at the lab&#x27;s next launch" in page
