"""The engine against real Keystone + Heat when Heat itself fails: its engine killed mid-create.

Real Celery workers and beat on a real Redis, the tests' rig for the cloud (Heat's API and
engine share one process there, so killing it kills the engine in the middle of its work).
Heat 27 leaves a stack whose engine died CREATE_IN_PROGRESS forever (the engine-restart reset
skips convergence stacks): the state deadline must notice it, and the lab be rebuilt.
"""

from __future__ import annotations

import time

import pytest
from django import db

from labxblock import labs
from labxblock.labs import LabSpec, ProviderChoice
from labxblock.lifecycle import State
from labxblock.models import Lab, LabEvent
from labxblock.providers.openstack import OpenStackProvider
from tests.engine_harness import LearnerView, rig_lab_template, time_to, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.heat, pytest.mark.slow]

# The creating deadline, shortened from the default 1,200 s so the test takes minutes, not
# twenty: a create Heat accepted and never finishes is caught by the deadline only (the
# acceptance window is for calls the cloud never took). Every other deadline is the default.
# It must outlast the create request on a busy Heat (up to ~30 s on the shared test machine), Heat's
# restart (~11 s) and the wait below (25 s), so that the learner is seen reading "Creating" first.
CREATING_DEADLINE = 90
CREATE_SECS = 20  # the lab's server: Heat is killed while it is being made


def rig_engine(engine_factory, openstack_rig):
    provider = {"type": "openstack", **openstack_rig.provider_config(), "allowed_networks": ["127.0.0.0/8"]}
    # The learners keep their pages open through it all: no lab is suspended for idleness meanwhile.
    return engine_factory(providers={"default": provider}, workers=1, suspend_timeout=3600,
                          state_deadline_seconds={"creating": CREATING_DEADLINE})


def where(ids: list[int]) -> list[tuple]:
    return list(Lab.objects.filter(pk__in=ids).order_by("pk").values_list(
        "pk", "state", "desired", "raw_status", "attempts", "deadline_at", "status_reason"))


def test_heat_killed_mid_create_the_stuck_stacks_are_rebuilt_by_the_deadline(engine_factory, openstack_rig):
    engine = rig_engine(engine_factory, openstack_rig)
    spec = LabSpec("course-v1:Org+Heat+Run", "lab",
                   (ProviderChoice("default", None, rig_lab_template(engine.lab_port.port, CREATE_SECS)),))
    launched = time.monotonic()
    ids = [labs.request_launch(engine.user(f"heat{i}"), spec, actor="learner").lab_id for i in range(2)]
    db.connections.close_all()
    heat = OpenStackProvider("rig", openstack_rig.provider_config())
    tag = "labxblock-test"

    def in_progress() -> dict[str, str]:
        return {info.ref.name: info.ref.data["id"] for info in heat.list_busy(tag)}

    names = set(Lab.objects.filter(pk__in=ids).values_list("stack_name", flat=True))
    wait_for("both stacks being created", lambda: names <= set(in_progress()), 60, explain=lambda: where(ids))
    stuck = {name: stack_id for name, stack_id in in_progress().items() if name in names}
    openstack_rig.kill_heat()  # the engine dies with both creates under way
    killed = time.monotonic()
    openstack_rig.start_heat()
    print(f"\nHeat killed {killed - launched:.1f} s after the launches, "
          f"back {time.monotonic() - killed:.1f} s later")
    view = LearnerView(ids)
    time.sleep(CREATE_SECS + 5)  # long after the creates would have finished
    assert in_progress().items() >= stuck.items()  # Heat 27 leaves them in progress, forever
    assert set(view.look().values()) == {("creating", "Creating your lab")}

    def rebuilt() -> bool:
        view.look()
        return Lab.objects.filter(pk__in=ids, state=State.READY).count() == len(ids)

    # The deadline (counted from when the create was made), a delete and a create on a busy Heat.
    budget = CREATING_DEADLINE + 2 * engine.settings["reconcile_interval_seconds"] + 60
    took = time_to("both labs rebuilt and ready", rebuilt, budget, explain=lambda: where(ids))
    print(f"both labs ready {time.monotonic() - killed:.1f} s after Heat was killed ({took:.1f} s of waiting "
          f"after the creates would have finished); learners read {view.seen}")
    assert "rebuilding" in view.phases()  # "Your lab is being prepared again", never "Removing your lab"
    assert view.phases() <= {"creating", "rebuilding", "queued", "starting", "ready"}
    for lab in Lab.objects.filter(pk__in=ids):
        assert lab.provider_state["id"] != stuck[lab.stack_name]  # a fresh stack
        reasons = list(LabEvent.objects.filter(lab=lab).values_list("reason", flat=True))
        assert "create_timeout" in reasons
    live = {lab.provider_state["id"] for lab in Lab.objects.filter(pk__in=ids)}

    def listed() -> set[str]:
        return {info.ref.data["id"] for info in heat.list(tag) if info.state is not State.DELETED}

    wait_for("the stuck stacks gone, only the fresh ones left", lambda: listed() == live, 60)
    for lab in Lab.objects.filter(pk__in=ids):  # leave nothing on the session's Heat
        heat.delete(heat.load_state(lab.stack_name, lab.provider_state))
