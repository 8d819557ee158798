"""The Keystone + Heat rig works for a non-admin user, with the project's own client libraries.

Prints the timings of each stack action (visible with ``pytest -s``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from heatclient import client as heat_client
from heatclient import exc as heat_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from labxblock.lifecycle import State
from labxblock.providers.openstack_status import heat_state
from tests.services.openstack_rig import OpenStackRig, template_text

pytestmark = [pytest.mark.heat, pytest.mark.slow]

TIMEOUT = 90.0  # per wait; the slowest action here asks for a few seconds


def _client(auth: Any, rig: OpenStackRig) -> Any:
    sess = ks_session.Session(auth=auth, timeout=30)
    return heat_client.Client("1", session=sess, region_name=rig.region_name, interface=rig.interface)


@pytest.fixture(scope="module")
def heat(openstack_rig: OpenStackRig) -> Any:
    """A Heat client acting as the rig's non-admin user, password auth."""
    cfg = openstack_rig.provider_config()
    auth = v3.Password(
        auth_url=cfg["auth_url"],
        username=cfg["username"],
        password=cfg["password"],
        project_name=cfg["project_name"],
        user_domain_name=cfg["user_domain_name"],
        project_domain_name=cfg["project_domain_name"],
    )
    return _client(auth, openstack_rig)


def _status(heat: Any, stack_id: str) -> tuple[str, str]:
    try:
        stack = heat.stacks.get(stack_id, resolve_outputs=False)
    except heat_exc.HTTPNotFound:
        return "GONE", ""
    return stack.stack_status, stack.stack_status_reason


def _wait(heat: Any, stack_id: str, want: set[str], timeout: float = TIMEOUT) -> tuple[str, float]:
    """Poll until the stack reaches a status in ``want`` (or any *_FAILED); return it and the time taken."""
    t0 = time.monotonic()
    status, reason = "", ""
    while time.monotonic() - t0 < timeout:
        status, reason = _status(heat, stack_id)
        if status in want or status.endswith("_FAILED"):
            return status, time.monotonic() - t0
        time.sleep(0.25)
    pytest.fail(f"stack {stack_id} still {status} ({reason}) after {timeout:.0f}s, wanted {want}")


def _create(heat: Any, template: str, tag: str, **params: Any) -> str:
    name = f"lab-{uuid.uuid4().hex[:12]}"
    created = heat.stacks.create(
        stack_name=name, template=template, tags=f"{tag},labxblock-test", parameters={"run": name, **params}
    )
    return str(created["stack"]["id"])


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def test_stack_lifecycle_as_non_admin(heat: Any, openstack_rig: OpenStackRig) -> None:
    tag = f"install-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    stack_id = _create(heat, template_text("lab_good.yaml"), tag, create_secs=3)
    accepted = time.monotonic() - t0
    status, created = _wait(heat, stack_id, {"CREATE_COMPLETE"})
    assert status == "CREATE_COMPLETE", _status(heat, stack_id)

    outputs = {o["output_key"]: o["output_value"] for o in heat.stacks.get(stack_id).outputs}
    assert outputs["public_ip"] == "127.0.0.1"
    assert outputs["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert len(outputs["password"]) == 16
    assert outputs["run"].startswith("lab-")

    listed = heat.stacks.list(tags=tag)
    assert [s.id for s in listed] == [stack_id]
    assert list(heat.stacks.list(tags=f"{tag}-other")) == []

    heat.actions.suspend(stack_id)
    status, suspended = _wait(heat, stack_id, {"SUSPEND_COMPLETE"})
    assert status == "SUSPEND_COMPLETE", _status(heat, stack_id)
    heat.actions.resume(stack_id)
    status, resumed = _wait(heat, stack_id, {"RESUME_COMPLETE"})
    assert status == "RESUME_COMPLETE", _status(heat, stack_id)

    heat.stacks.delete(stack_id)
    status, deleted = _wait(heat, stack_id, {"DELETE_COMPLETE", "GONE"})
    assert status in {"DELETE_COMPLETE", "GONE"}, _status(heat, stack_id)
    t0 = time.monotonic()
    while list(heat.stacks.list(tags=tag)) and time.monotonic() - t0 < TIMEOUT:
        time.sleep(0.25)
    assert list(heat.stacks.list(tags=tag)) == []
    gone = time.monotonic() - t0

    print(f"\nrig start-up {dict(openstack_rig.timings)}; memory MiB {openstack_rig.memory_mb()}")
    print(
        f"create accepted {accepted:.1f}s, CREATE_COMPLETE +{created:.1f}s (create_secs=3), "
        f"suspend {suspended:.1f}s, resume {resumed:.1f}s (1s each asked), delete {deleted:.1f}s (1s asked), "
        f"then gone from list +{gone:.1f}s"
    )


def test_concurrent_creates(heat: Any, openstack_rig: OpenStackRig) -> None:
    """Three stacks at once: SQLite without BEGIN IMMEDIATE fails most of them ("database is locked")."""
    tag = f"install-{uuid.uuid4().hex[:8]}"
    template = template_text("lab_good.yaml")
    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda _: _create(heat, template, tag, create_secs=2), range(3)))
        results = list(pool.map(lambda sid: _wait(heat, sid, {"CREATE_COMPLETE"}), ids))
    all_created = time.monotonic() - t0
    assert [status for status, _ in results] == ["CREATE_COMPLETE"] * 3, [_status(heat, s) for s in ids]
    assert len(list(heat.stacks.list(tags=tag))) == 3

    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(heat.stacks.delete, ids))
        results = list(pool.map(lambda sid: _wait(heat, sid, {"DELETE_COMPLETE", "GONE"}), ids))
    assert all(status in {"DELETE_COMPLETE", "GONE"} for status, _ in results), results
    print(
        f"\n3 concurrent creates complete in {all_created:.1f}s, deletes in {time.monotonic() - t0:.1f}s; "
        f"memory MiB {openstack_rig.memory_mb()}"
    )


def test_failed_create_reports_reason(heat: Any) -> None:
    stack_id = _create(heat, template_text("lab_fail_create.yaml"), "fail", create_secs=1)
    status, _ = _wait(heat, stack_id, {"CREATE_COMPLETE"})
    assert status == "CREATE_FAILED"
    assert "fail_on" in _status(heat, stack_id)[1]
    heat.stacks.delete(stack_id)
    assert _wait(heat, stack_id, {"DELETE_COMPLETE", "GONE"})[0] in {"DELETE_COMPLETE", "GONE"}


def test_slow_suspend_is_observable(heat: Any) -> None:
    stack_id = _create(heat, template_text("lab_slow_suspend.yaml"), "slow", suspend_secs=3, resume_secs=1)
    assert _wait(heat, stack_id, {"CREATE_COMPLETE"})[0] == "CREATE_COMPLETE"
    heat.actions.suspend(stack_id)
    status, _ = _wait(heat, stack_id, {"SUSPEND_IN_PROGRESS", "SUSPEND_COMPLETE"})
    assert status == "SUSPEND_IN_PROGRESS"
    status, took = _wait(heat, stack_id, {"SUSPEND_COMPLETE"})
    assert status == "SUSPEND_COMPLETE" and took >= 2.0
    outputs = {o["output_key"]: o["output_value"] for o in heat.stacks.get(stack_id).outputs}
    # The resource's own suspend ran. Heat may run a resource action again when the engine
    # retries a locked database transaction, so the count is at least one, not exactly one.
    assert outputs["suspend_count"] >= 1
    heat.stacks.delete(stack_id)
    assert _wait(heat, stack_id, {"DELETE_COMPLETE", "GONE"})[0] in {"DELETE_COMPLETE", "GONE"}


def test_delete_mid_create_first_marks_the_create_cancelled(heat: Any) -> None:
    """Heat stops the create before deleting: CREATE_FAILED "Stack CREATE cancelled" for a moment
    (the provider maps exactly that to DELETING: see test_openstack_mapping.py)."""
    stack_id = _create(heat, template_text("lab_good.yaml"), "cancel", create_secs=30, delete_secs=3)
    assert _wait(heat, stack_id, {"CREATE_IN_PROGRESS"})[0] == "CREATE_IN_PROGRESS"
    time.sleep(1)
    heat.stacks.delete(stack_id)
    t0 = time.monotonic()
    while _status(heat, stack_id)[0] not in {"DELETE_IN_PROGRESS", "DELETE_COMPLETE", "GONE"}:
        assert time.monotonic() - t0 < TIMEOUT, _status(heat, stack_id)
        time.sleep(0.1)
    events = [(e.resource_status, e.resource_status_reason) for e in heat.events.list(stack_id)
              if e.physical_resource_id == stack_id]  # the stack's own events, not its resources'
    assert ("CREATE_FAILED", "Stack CREATE cancelled") in events, events
    assert heat_state("CREATE_FAILED", "Stack CREATE cancelled") == State.DELETING
    assert _wait(heat, stack_id, {"DELETE_COMPLETE", "GONE"})[0] in {"DELETE_COMPLETE", "GONE"}


def test_application_credential_can_create(openstack_rig: OpenStackRig) -> None:
    cfg = openstack_rig.app_credential_config()
    auth = v3.ApplicationCredential(
        auth_url=cfg["auth_url"],
        application_credential_id=cfg["application_credential_id"],
        application_credential_secret=cfg["application_credential_secret"],
    )
    heat = _client(auth, openstack_rig)
    stack_id = _create(heat, template_text("lab_good.yaml"), "appcred", create_secs=0)
    assert _wait(heat, stack_id, {"CREATE_COMPLETE"})[0] == "CREATE_COMPLETE", _status(heat, stack_id)
    heat.stacks.delete(stack_id)
    assert _wait(heat, stack_id, {"DELETE_COMPLETE", "GONE"})[0] in {"DELETE_COMPLETE", "GONE"}
