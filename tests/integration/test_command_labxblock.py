"""``manage.py labxblock …``: each subcommand run with call_command against the test database, and
the check once in a real subprocess; providers are the cloud fake, the real Heat rig and local."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from labxblock.labs import placement
from labxblock.lifecycle import Desired, State
from labxblock.models import Blueprint, Lab, LabEvent, ProviderLock
from tests.engine_harness import active_lab_settings, lab_settings

pytestmark = pytest.mark.django_db
RUN, OTHER = "course-v1:Org+Cmd+Run", "course-v1:Org+Other+Run"
ROOT = Path(__file__).parents[2]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("labxblock", *args, stdout=out)
    return out.getvalue()


def make_lab(name: str, course_run: str = RUN, provider: str = "default", **fields) -> Lab:
    user = get_user_model().objects.create_user(username=name)
    fields.setdefault("state", State.READY)
    fields.setdefault("lab_key", "k")
    return Lab.objects.create(learner=user, course_run=course_run, provider=provider, **fields)


@pytest.fixture
def two_providers(cloud_fake):
    cloud = cloud_fake.provider_config
    settings = lab_settings({name: {"type": "openstack", **cloud} for name in ("default", "os2")})
    with active_lab_settings(settings):
        yield settings


def test_list_filters_and_formats_without_secrets_or_addresses() -> None:
    ada = make_lab("ada", ip="203.0.113.9", password="hunter2-lab")
    make_lab("bob", course_run=OTHER, state=State.SUSPENDED)
    make_lab("cy", provider="os2", state=State.FAILED)
    table = run("list", "--course-run", RUN)
    assert "ada" in table and "cy" in table and "bob" not in table
    assert "203.0.113.9" not in table and "hunter2-lab" not in table
    records = json.loads(run("list", "--state", "ready", "--format", "json"))
    assert [(r["learner"], r["stack_name"], r["state"]) for r in records] == [
        ("ada", ada.stack_name, "ready")]
    rows = list(csv.DictReader(io.StringIO(run("list", "--provider", "os2", "--format", "csv"))))
    assert [(r["learner"], r["state"]) for r in rows] == [("cy", "failed")]
    assert json.loads(run("list", "--learner", "bob", "--format", "json"))[0]["course_run"] == OTHER


def test_suspend_a_course_run_marks_its_labs_for_the_reconciler_and_logs_the_command() -> None:
    ours, theirs = make_lab("dee"), make_lab("eve", course_run=OTHER)
    dry = run("suspend", "--course-run", RUN, "--dry-run")
    assert dry == "suspend: 1 lab(s) would be considered (dry run)\n"
    assert Lab.objects.get(pk=ours.pk).desired == Desired.UP
    assert "suspend: 1 lab(s) on their way" in run("suspend", "--course-run", RUN)
    assert Lab.objects.get(pk=ours.pk).desired == Desired.SUSPENDED
    assert Lab.objects.get(pk=theirs.pk).desired == Desired.UP
    event = LabEvent.objects.get(lab=ours)
    assert (event.actor, event.reason) == ("operator:command", "suspend requested")
    with pytest.raises(CommandError, match="give --course-run, --provider or both"):
        run("suspend")


def test_grant_adds_hours_to_the_time_budgets_chosen_and_logs_the_command() -> None:
    budget = {"budget_limits": {"unit": 3600.0}}
    ada, bob, other = make_lab("ada", **budget), make_lab("bob", **budget), make_lab("cy", OTHER, **budget)
    free = make_lab("dee")
    out = run("grant", "--hours", "2.5", "--course-run", RUN, "--learner", "ada")
    assert out == "grant: 1 lab(s) on their way, 0 left as they were\n"
    assert Lab.objects.get(pk=ada.pk).budget_granted_seconds == 9000
    event = LabEvent.objects.get(lab=ada)
    assert (event.actor, event.reason) == ("operator:command", "time budget: 2.5 h granted, 3.5 h left")
    assert "1 lab(s) on their way, 1 left" in run("grant", "--hours", "1", "--lab-id", str(bob.pk),
                                                   "--lab-id", str(free.pk))
    assert Lab.objects.get(pk=other.pk).budget_granted_seconds == 0
    with pytest.raises(CommandError, match="give --lab-id or --course-run"):
        run("grant", "--hours", "1")
    with pytest.raises(CommandError, match="expected hours above 0"):
        run("grant", "--hours", "0", "--course-run", RUN)


def test_delete_a_provider_needs_yes() -> None:
    lab = make_lab("fay", provider="os2")
    with pytest.raises(CommandError, match="add --yes"):
        run("delete", "--provider", "os2")
    assert Lab.objects.get(pk=lab.pk).desired == Desired.UP
    run("delete", "--provider", "os2", "--yes")
    assert Lab.objects.get(pk=lab.pk).desired == Desired.DELETED


def test_drain_places_no_new_launch_there_suspends_its_labs_and_undrain_lifts_it(two_providers) -> None:
    running = make_lab("gus")
    blueprint = Blueprint.objects.create(digest="d" * 64, spec={"providers": [
        {"name": "default", "capacity": None}, {"name": "os2", "capacity": None}]})
    queued = make_lab("hal", provider="", state=State.REQUESTED, blueprint=blueprint)
    out = run("drain", "default")
    assert "default: draining; no new launches there" in out
    assert Lab.objects.get(pk=running.pk).desired == Desired.SUSPENDED
    assert ProviderLock.objects.get(name="default").draining
    placement.place([queued])
    assert Lab.objects.get(pk=queued.pk).provider == "os2"  # the drained provider was skipped
    run("undrain", "default")
    assert not ProviderLock.objects.get(name="default").draining
    with pytest.raises(CommandError, match="no provider 'nope'; configured: default, os2"):
        run("drain", "nope")


def test_with_move_a_drained_lab_is_rebuilt_elsewhere_at_its_next_launch(two_providers) -> None:
    from labxblock import labs
    from tests.engine_harness import lab_spec

    learner = get_user_model().objects.create_user(username="ivy")
    spec = lab_spec(22, providers=("default", "os2"))
    labs.request_launch(learner, spec, actor="learner:test")
    Lab.objects.update(provider="default", state=State.SUSPENDED, desired=Desired.SUSPENDED)
    run("drain", "default", "--move")
    labs.request_launch(learner, spec, actor=f"learner:{learner.pk}")
    lab = Lab.objects.get()
    assert (lab.state, lab.desired) == (State.DELETING, Desired.UP)  # then placed afresh, not on default
    assert LabEvent.objects.filter(lab=lab, reason="moved off a draining provider").exists()
    run("undrain", "default")
    Lab.objects.update(state=State.SUSPENDED, desired=Desired.SUSPENDED)
    labs.request_launch(learner, spec, actor=f"learner:{learner.pk}")
    assert Lab.objects.get().state == State.SUSPENDED  # resumed where it is: the reconciler acts


def test_usage_writes_csv_by_default_for_the_period() -> None:
    lab = make_lab("jon")
    start = timezone.now() - timedelta(hours=2)
    LabEvent.record(lab, actor="t", from_state="", to_state=State.CREATING, at=start)
    LabEvent.record(lab, actor="t", from_state="creating", to_state=State.SUSPENDED,
                    at=start + timedelta(hours=1))
    day = timezone.now().date().isoformat()
    rows = list(csv.DictReader(io.StringIO(run("usage", "--since", day, "--until", day))))
    if start.date() == timezone.now().date():  # a run just after midnight starts the day later
        assert [(r["learner"], r["up_hours"], r["launches"], r["cost"], r["currency"]) for r in rows] == [
            ("jon", "1.0", "1", "", "USD")]
    per_run = json.loads(run("usage", "--since", "2026-01-01", "--by", "course_run", "--format", "json"))
    assert [(r["course_run"], r["learner"], r["up_hours"]) for r in per_run] == [(RUN, "", 1.0)]
    with pytest.raises(CommandError, match="must not be before"):
        run("usage", "--since", "2026-02-02", "--until", "2026-02-01")


def test_reconcile_once_starts_the_create_of_a_queued_lab(cloud_fake) -> None:
    with active_lab_settings(lab_settings({"default": {"type": "openstack", **cloud_fake.provider_config}})):
        lab = make_lab("kim", provider="", state=State.REQUESTED)
        assert run("reconcile") == "labxblock reconcile: 1 lab(s) acted on\n"
    assert Lab.objects.get(pk=lab.pk).state == State.CREATING


def test_check_gives_a_verdict_per_provider_and_fails_when_one_fails(cloud_fake) -> None:
    cloud = cloud_fake.provider_config
    cloud_fake.configure(max_instances=20)
    providers = {"default": {"type": "openstack", **cloud},
                 "broken": {"type": "openstack", **cloud, "password": "sekrit-wrong"}}
    out = io.StringIO()
    with active_lab_settings(lab_settings(providers)), pytest.raises(CommandError) as failed:
        call_command("labxblock", "check", stdout=out)
    assert failed.value.returncode == 1 and "failed: provider broken (openstack)" in str(failed.value)
    text = out.getvalue()
    assert "provider default (openstack): ok\n  authenticate: ok, project labs\n" in text
    assert "  list: 0 stack(s) tagged labxblock-test\n  quota: instances 0 of 20" in text
    assert "provider broken (openstack): FAIL\n  authenticate: broken: authenticate refused (401)" in text
    assert "sekrit-wrong" not in text + str(failed.value)  # credentials are never echoed


def test_check_in_a_subprocess_exits_non_zero_on_bad_settings_and_zero_when_all_is_well(
        cloud_fake, transactional_db) -> None:
    def check(lab_settings_json: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "LABXBLOCK_TEST_LAB_SETTINGS": lab_settings_json,
               "DJANGO_SETTINGS_MODULE": "tests.settings"}
        return subprocess.run([sys.executable, "-m", "django", "labxblock", "check"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    good = check(json.dumps(lab_settings({"default": {"type": "openstack", **cloud_fake.provider_config}})))
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1] == "labxblock check: all ok"
    bad = check(json.dumps({"install_id": "Not A Slug"}))
    assert bad.returncode == 1
    assert "settings: FAIL\n  labxblock.install_id: expected a slug" in bad.stdout


@pytest.mark.heat
@pytest.mark.slow
def test_check_against_the_real_heat_rig(openstack_rig) -> None:
    settings = lab_settings({"default": {"type": "openstack", **openstack_rig.provider_config()}})
    with active_lab_settings(settings):
        text = run("check")
    assert "provider default (openstack): ok\n  authenticate: ok, project " in text
    assert "  list: " in text and "  quota: not reported" in text  # the rig runs no Nova


def test_check_of_the_local_provider(tmp_path) -> None:
    settings = lab_settings({"default": {"type": "local", "root": str(tmp_path / "labs")}})
    with active_lab_settings(settings):
        text = run("check")
    assert "provider default (local): ok\n  sshd: /usr/sbin/sshd\n" in text
    assert "  list: 0 lab(s) tagged labxblock-test\n" in text
    assert "GiB free under" in text


def test_pool_set_list_and_remove_with_reasons_for_what_cannot_be_stored() -> None:
    from labxblock.models import WarmPool

    said = run("pool", "set", "--course-run", RUN, "--lab-key", "k", "--size", "3",
               "--schedule", "mon-fri 08:00-18:00", "--time-zone", "Europe/Berlin")
    assert f"pool for {RUN} k: size 3, 0 now" in said  # nothing is built blind:
    assert "its template is learned at the lab's next launch" in said
    blueprint = Blueprint.objects.create(digest="b" * 64, spec={})
    lab = make_lab("teacher", lab_key="k", blueprint=blueprint)
    said = run("pool", "set", "--from-lab", str(lab.pk), "--keep", "running")  # unset options stay
    pool = WarmPool.objects.get()
    assert (pool.size, pool.keep, pool.schedule, pool.time_zone, pool.blueprint) == (
        3, "running", "mon-fri 08:00-18:00", "Europe/Berlin", blueprint)
    assert "learned" not in said
    Lab.objects.create(course_run=RUN, lab_key="k", pool=pool, blueprint=blueprint, state=State.SUSPENDED,
                       desired=Desired.SUSPENDED, provider="default")
    (record,) = json.loads(run("pool", "list", "--format", "json"))
    assert (record["size"], record["keep"], record["suspended"], record["template"]) == (
        3, "running", 1, blueprint.digest[:12])

    with pytest.raises(CommandError, match=r"pool set: 'weekdays': expected a window such as"):
        run("pool", "set", "--course-run", RUN, "--lab-key", "k", "--schedule", "weekdays")
    with pytest.raises(CommandError, match="pool set: no lab with id 999999"):
        run("pool", "set", "--from-lab", "999999")
    assert WarmPool.objects.get().schedule == "mon-fri 08:00-18:00"  # unchanged by what was refused

    removed = run("pool", "remove", "--course-run", RUN, "--lab-key", "k")
    assert "1 unassigned stack(s) will be deleted" in removed
    assert not WarmPool.objects.exists()
    with pytest.raises(CommandError, match=re.escape(f"pool remove: no warm pool for {RUN} k")):
        run("pool", "remove", "--course-run", RUN, "--lab-key", "k")
