"""labxblock_migrate_legacy_stacks on a running site: the old stack table, stacks in the cloud fake.

The old table is made the way the old app's migrations made it (Django's schema editor,
the columns of its ``Stack`` model), in the test database; the old app is not installed.
The learners' stacks are made in the cloud fake directly, untagged, as the old package
made them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.utils import timezone

from labxblock.labs import LabSpec, ProviderChoice, request_launch
from labxblock.labs.adoption import UNTAGGED
from labxblock.legacy.convert import LEGACY_LAB_GROUP
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.cloudfake.server import CloudFake
from tests.engine_harness import active_lab_settings, lab_settings, lab_template, wait_for

# The old table is read with plain SQL ("key" and "user" are reserved words on MariaDB), and
# adopted labs are found by a JSON key: both depend on the engine.
pytestmark = pytest.mark.mariadb
COURSE = "course-v1:Acme+LNX101+2024_T1"
OTHER_COURSE = "course-v1:Acme+K8S201+2023"
OLD_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb2xkLXBhY2thZ2UtbWFkZS1rZXk=\n"
           "-----END OPENSSH PRIVATE KEY-----\n")


class OldStack(models.Model):
    """stackamole-xblock 9.5.0's ``Stack`` (StackCommon + Stack), as its migrations left the table."""

    name = models.CharField(max_length=64, db_index=True)
    student_id = models.CharField(max_length=40, db_index=True)
    course_id = models.CharField(max_length=50, db_index=True)
    run = models.CharField(max_length=50, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    providers = models.TextField(default="[]")  # jsonfield's JSONField: JSON as text
    hook_script = models.CharField(max_length=256, null=True)
    hook_events = models.TextField(default="{}")
    protocol = models.CharField(max_length=32, blank=True)
    port = models.IntegerField(null=True)
    status = models.CharField(max_length=32, blank=True, db_index=True)
    error_msg = models.CharField(max_length=256, blank=True)
    ip = models.GenericIPAddressField(null=True)
    user = models.CharField(max_length=32, blank=True)
    launch_task_id = models.CharField(max_length=40, blank=True)
    launch_timestamp = models.DateTimeField(null=True, db_index=True)
    suspend_timestamp = models.DateTimeField(null=True, db_index=True)
    suspend_by = models.DateTimeField(null=True, db_index=True)
    created_on = models.DateTimeField(auto_now_add=True, db_index=True)
    delete_age = models.IntegerField(null=True)
    delete_by = models.DateTimeField(null=True, db_index=True)
    key = models.TextField(blank=True, null=True)
    password = models.CharField(max_length=128, blank=True, null=True)
    learner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, db_index=True, on_delete=models.PROTECT,
                                related_name="+")

    class Meta:
        app_label = "stackamole"
        db_table = "stackamole_stack"
        unique_together = (("student_id", "course_id", "name"),)


def keyless_template(port: int) -> str:
    """A template for a lab whose key the old package made (stack_key_type): no private_key output."""
    return "\n".join(line for line in lab_template(port).splitlines()
                     if "private_key" not in line and "password" not in line) + "\n"


FAILING = """heat_template_version: 2018-08-31
resources:
  broken: {type: OS::Heat::TestResource, properties: {fail: true}}
"""


@pytest.fixture
def old_table(transactional_db) -> Iterator[None]:
    with connection.schema_editor() as editor:
        editor.create_model(OldStack)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(OldStack)


class Site:
    """A site moving off stackamole: users, the old table's rows, their stacks in the cloud."""

    def __init__(self, cloud_fake: Any, port: int) -> None:
        self.fake, self.cloud = cloud_fake, cloud_fake.cloud
        users = get_user_model().objects
        self.ada, self.bob, self.cy, self.dee, self.eve = (users.create_user(n) for n in
                                                            ("ada", "bob", "cy", "dee", "eve"))
        now = timezone.now()
        self.delete_by = now + timedelta(days=5)
        self.row("LNX101_2024_T1_ada", self.ada, "CREATE_COMPLETE", template=lab_template(port),
                 launch_timestamp=now, delete_by=self.delete_by)  # its stack is made just after
        self.row("LNX101_2024_T1_bob", self.bob, "SUSPEND_COMPLETE", template=keyless_template(port),
                 suspend=True, key=OLD_KEY, ip="127.0.0.2", user="student", protocol="rdp", port=3389,
                 provider="old-cloud", suspend_timestamp=now - timedelta(days=1))
        self.row("LNX101_2024_T1_cy", self.cy, "CREATE_COMPLETE", template=None)  # gone from the cloud
        self.row("K8S201_2023_dee", self.dee, "CREATE_FAILED", template=FAILING, course=OTHER_COURSE)
        self.row("LNX101_2024_T1_nobody", None, "RESUME_COMPLETE", template=lab_template(port))
        self.row("LNX101_2024_T1_eve", self.eve, "DELETE_COMPLETE", template=None)  # the old reaper's
        wait_for("the old stacks to settle", lambda: all(
            not self.cloud.document(s, "", detail=False)["stack_status"].endswith("IN_PROGRESS")
            for s in self.cloud.stacks.values()), timeout=10, interval=0.05)

    def row(self, name: str, learner: Any, status: str, *, template: str | None, suspend: bool = False,
            course: str = COURSE, **columns: Any) -> None:
        OldStack.objects.create(
            name=name, student_id=f"anon-{name[-6:]}", course_id=course, run="LNX101_2024_T1",
            provider=columns.pop("provider", "default"), status=status, learner=learner,
            user=columns.pop("user", "training"), protocol=columns.pop("protocol", "ssh"),
            port=columns.pop("port", 22), key=columns.pop("key", "stale-key"), password="stale-pw",
            hook_script="hook.sh", **columns,
        )
        if template is not None:
            stack = self.cloud.create({"stack_name": name, "template": template, "tags": "",
                                      "parameters": {"run": "LNX101_2024_T1"}})  # as the old package sent
            if suspend:
                wait_for(f"{name} created", lambda: self.cloud.document(stack, "", detail=False)[
                    "stack_status"] == "CREATE_COMPLETE", timeout=10, interval=0.05)
                self.cloud.act(stack, "SUSPEND")

    def stacks(self) -> set[str]:
        return {s.name for s in self.cloud.listing([])}


# Bob's row names the old package's provider "old-cloud": the operator says which of ours it is.
OLD_PROVIDERS = ("--provider", "old-cloud=default")


def migrate(*args: str, names: tuple[str, ...] = OLD_PROVIDERS) -> str:
    out = io.StringIO()
    call_command("labxblock_migrate_legacy_stacks", *names, *args, stdout=out)
    return out.getvalue()


def line_of(report: str, stack: str) -> str:
    return next(line for line in report.splitlines() if line.startswith(stack + " "))


@pytest.fixture
def site(old_table, cloud_fake, lab_port) -> Iterator[Site]:
    cloud_fake.configure(delays={"create": 0.05, "suspend": 0.05, "resume": 0.3, "delete": 0.05,
                                 "update": 0.05})
    with active_lab_settings(lab_settings({"default": {"type": "openstack", **cloud_fake.provider_config}})):
        yield Site(cloud_fake, lab_port.port)


def test_a_dry_run_reports_each_stack_and_changes_nothing(site: Site) -> None:
    before = site.stacks()
    report = migrate()
    assert "LNX101_2024_T1_eve" not in report  # the old package had deleted it
    assert "ready on default" in line_of(report, "LNX101_2024_T1_ada")
    assert line_of(report, "LNX101_2024_T1_ada").endswith("would adopt")
    bob = line_of(report, "LNX101_2024_T1_bob")  # its old provider, old-cloud, is our default
    assert "SUSPEND_COMPLETE" in bob and "suspended on default" in bob and bob.endswith("would adopt")
    assert "Provider default: project labs (0f1e2d3c4b5a69788796a5b4c3d2e1f0), Keystone http://" in report
    assert line_of(report, "LNX101_2024_T1_cy").endswith("nothing: gone")
    assert line_of(report, "K8S201_2023_dee").endswith("failed in the cloud (--delete removes it)")
    assert line_of(report, "LNX101_2024_T1_nobody").endswith("names no learner (--delete removes it)")
    assert "5 old stack(s): 1 failed, 1 gone, 2 ready, 1 suspended; 3 alive" in report
    assert "Dry run: nothing changed. --adopt makes 2 stack(s) the learners' labs; --delete deletes the 4 " \
        "stack(s) still in the cloud." in report
    assert OLD_KEY.splitlines()[1] not in report and "stale-pw" not in report  # no secret is shown
    assert not Lab.objects.exists() and site.stacks() == before
    assert not {k for k in site.fake.counters() if k.startswith(("stack_delete", "stack_suspend"))}


def test_a_stack_is_looked_for_on_its_rows_own_provider_only(site: Site) -> None:
    unmapped = line_of(migrate(names=()), "LNX101_2024_T1_bob")  # old-cloud is not one of ours
    assert unmapped.endswith("nothing: could not ask (its provider old-cloud is not one of this site's: name "
                             "ours with --provider old-cloud=NAME)")
    other = CloudFake()
    other.start()
    try:  # a second cloud, where a stack bears the name of cy's (gone from default) and of ada's
        for name in ("LNX101_2024_T1_cy", "LNX101_2024_T1_ada"):
            other.cloud.create({"stack_name": name, "template": keyless_template(22), "tags": "",
                                "parameters": {"run": "LNX101_2024_T1"}})
        providers = {name: {"type": "openstack", **fake.provider_config}
                     for name, fake in (("default", site.fake), ("other", other))}
        with active_lab_settings(lab_settings(providers)):
            report = migrate()
            assert line_of(report, "LNX101_2024_T1_cy").endswith("nothing: gone")
            assert "ready on default" in line_of(report, "LNX101_2024_T1_ada")
            assert "Provider other" not in report  # never asked
            migrate("--adopt")
            migrate("--delete")
            with pytest.raises(CommandError, match="--provider old-cloud=elsewhere: expected OLD=NAME"):
                migrate(names=("--provider", "old-cloud=elsewhere"))
        assert {s.name for s in other.cloud.listing([])} == {"LNX101_2024_T1_cy", "LNX101_2024_T1_ada"}
        assert not other.counters().get("stack_get") and not other.counters().get("stack_delete")
        assert not Lab.objects.filter(learner=site.cy).exists()
        assert Lab.objects.get(learner=site.ada).provider == "default"
    finally:
        other.stop()


def test_a_stack_of_the_rows_name_made_before_the_row_or_after_its_last_launch_is_not_its(site: Site) -> None:
    now = timezone.now()
    late, early = (get_user_model().objects.create_user(n) for n in ("late", "early"))
    site.row("LNX101_2024_T1_late", late, "CREATE_COMPLETE", template=lab_template(22),
             launch_timestamp=now - timedelta(days=2))  # the name was taken again since
    site.row("LNX101_2024_T1_early", early, "CREATE_COMPLETE", template=lab_template(22))
    OldStack.objects.filter(name="LNX101_2024_T1_early").update(created_on=now + timedelta(hours=1))
    report = migrate()
    late_line, early_line = line_of(report, "LNX101_2024_T1_late"), line_of(report, "LNX101_2024_T1_early")
    assert "after the old row's last launch" in late_line and late_line.endswith("not its stack")
    assert "before the old row" in early_line and early_line.endswith("not its stack")
    assert "--delete deletes the 4 stack(s) still in the cloud" in report  # neither of them
    for mode in ("--adopt", "--delete"):
        done = migrate(mode)
        assert "left alone: the stack of that name" in line_of(done, "LNX101_2024_T1_late")
        assert "left alone: the stack of that name" in line_of(done, "LNX101_2024_T1_early")
    assert {"LNX101_2024_T1_late", "LNX101_2024_T1_early"} <= site.stacks()
    assert not Lab.objects.filter(learner__in=[late, early]).exists()


def test_adopt_gives_learners_their_stacks_as_labs_and_a_second_run_changes_nothing(site: Site) -> None:
    report = migrate("--adopt")
    assert line_of(report, "LNX101_2024_T1_ada").endswith("  adopted; tagged")
    # Heat updates no suspended stack, and tags only by an update: Bob's waits for a later run.
    assert line_of(report, "LNX101_2024_T1_bob").endswith(
        "  adopted; not tagged now: default: stack tag refused (400): the cloud rejected the request: "
        "NotSupported: Updating a stack when it is suspended is not supported.")
    assert site.cloud.find("LNX101_2024_T1_ada").tags == ["labxblock-test"]
    assert site.cloud.find("LNX101_2024_T1_bob").tags == []
    ada, bob = Lab.objects.get(learner=site.ada), Lab.objects.get(learner=site.bob)
    assert (ada.stack_name, ada.course_run, ada.lab_key) == ("LNX101_2024_T1_ada", COURSE, LEGACY_LAB_GROUP)
    assert (ada.state, ada.desired, ada.provider) == (State.READY, Desired.UP, "default")
    assert ada.ip == "127.0.0.1" and ada.private_key.startswith("-----BEGIN")  # the cloud's outputs first
    assert ada.delete_by == site.delete_by and ada.idle_at is not None
    assert (bob.state, bob.desired, bob.stack_user, bob.protocol) == (State.SUSPENDED, Desired.SUSPENDED,
                                                                       "student", "rdp")
    assert bob.private_key == OLD_KEY and bob.ip == "127.0.0.2"  # the old record where the cloud is silent
    with connection.cursor() as cursor:
        cursor.execute("SELECT stack_name, private_key FROM labxblock_lab")
        raw = dict(cursor.fetchall())
    assert OLD_KEY not in raw["LNX101_2024_T1_bob"] and "BEGIN" not in raw["LNX101_2024_T1_ada"]  # encrypted
    assert LabEvent.objects.filter(lab=bob, reason__startswith="adopted from stackamole_stack id").exists()
    assert Lab.objects.count() == 2  # no learner (nobody), failed (dee), gone (cy): no lab

    ada_stack = site.cloud.find("LNX101_2024_T1_ada")
    wait_for("Ada's stack updated", lambda: site.cloud.document(ada_stack, "", detail=False)["stack_status"]
             == "UPDATE_COMPLETE", timeout=10, interval=0.05)
    again = migrate("--adopt")
    assert line_of(again, "LNX101_2024_T1_ada").endswith("already adopted; tagged")
    assert Lab.objects.count() == 2
    # Ada's stack updated once (the second run found its tag), Bob's asked twice and refused twice.
    assert site.fake.counters()["stack_update"] == 3 and site.fake.counters()["status_202"] == 1


def test_a_learner_who_already_has_a_labxblock_lab_keeps_it(site: Site) -> None:
    Lab.objects.create(learner=site.ada, course_run=COURSE, lab_key=LEGACY_LAB_GROUP,
                       stack_name="lab-test-new")
    report = migrate()
    assert line_of(report, "LNX101_2024_T1_ada").endswith("would not adopt: the learner already has the lab "
                                                           "lab-test-new")
    assert "not adopted" in line_of(migrate("--adopt"), "LNX101_2024_T1_ada")
    assert Lab.objects.get(learner=site.ada).stack_name == "lab-test-new"


def test_a_stack_at_an_address_the_site_refuses_is_not_adopted(site: Site) -> None:
    far = get_user_model().objects.create_user("far")
    site.row("LNX101_2024_T1_far", far, "SUSPEND_COMPLETE", template=keyless_template(22), suspend=True,
             ip="192.0.2.77")  # outside the provider's allowed_networks
    wait_for("far's stack suspended", lambda: site.cloud.document(
        site.cloud.find("LNX101_2024_T1_far"), "", detail=False)["stack_status"] == "SUSPEND_COMPLETE",
        timeout=10, interval=0.05)
    line = line_of(migrate("--adopt"), "LNX101_2024_T1_far")
    assert line.endswith("not adopted: this site refuses its address: lab address 192.0.2.77 is not allowed: "
                         "outside the allowed networks")
    assert not Lab.objects.filter(learner=far).exists()


def test_delete_removes_the_stacks_but_never_one_a_lab_uses(site: Site) -> None:
    migrate("--adopt")
    report = migrate("--delete")
    assert line_of(report, "LNX101_2024_T1_ada").endswith("left alone: a labxblock lab uses it")
    assert line_of(report, "K8S201_2023_dee").endswith("deletion requested")
    assert line_of(report, "LNX101_2024_T1_nobody").endswith("deletion requested")
    kept = {"LNX101_2024_T1_ada", "LNX101_2024_T1_bob"}
    wait_for("the deleted stacks to go", lambda: site.stacks() == kept, timeout=10, interval=0.05)
    assert "nothing: gone" in line_of(migrate("--delete"), "K8S201_2023_dee")  # again: nothing to do


def test_delete_without_adopting_removes_every_stack_still_there(site: Site) -> None:
    migrate("--delete", "--course", COURSE)
    wait_for("the course's stacks to go", lambda: site.stacks() == {"K8S201_2023_dee"}, timeout=10,
             interval=0.05)
    assert not Lab.objects.exists()


def test_no_old_table_is_a_clear_error(transactional_db, cloud_fake) -> None:
    providers = {"default": {"type": "openstack", **cloud_fake.provider_config}}
    with active_lab_settings(lab_settings(providers)), pytest.raises(CommandError, match="no old stack"):
        migrate()


@pytest.mark.redis
@pytest.mark.slow
def test_the_engine_keeps_adopted_labs_and_a_suspended_one_resumes_with_its_old_key(
        old_table, engine_factory, cloud_fake) -> None:
    engine = engine_factory()  # real worker and beat, on the settings above (reap every 5 s)
    cloud_fake.configure(delays={"create": 0.05, "suspend": 0.05, "resume": 0.3, "delete": 0.05})
    site = Site(cloud_fake, engine.lab_port.port)
    migrate("--adopt")  # Ada's stack is tagged; Bob's, suspended, is not (Heat would not update it)
    ada, bob = Lab.objects.get(learner=site.ada), Lab.objects.get(learner=site.bob)
    wait_for("an audit seeing Ada's stack in the tagged list", lambda: not untagged(ada), timeout=30)
    gets = cloud_fake.counters().get("stack_get", 0)
    # Two audits more: only Bob's stack, untagged, is read by name (no list shows it)…
    wait_for("two audits, or the engine acting on an adopted lab", lambda: (
        cloud_fake.counters().get("stack_get", 0) >= gets + 2
        or LabEvent.objects.exclude(actor="migration").exists()), timeout=30)
    assert not LabEvent.objects.exclude(actor="migration").exists()
    assert cloud_fake.counters().get("stack_get", 0) < gets + 4
    ada, bob = Lab.objects.get(pk=ada.pk), Lab.objects.get(pk=bob.pk)
    assert (ada.state, ada.stack_name) == (State.READY, "LNX101_2024_T1_ada")  # …and both are left be
    assert (bob.state, bob.stack_name) == (State.SUSPENDED, "LNX101_2024_T1_bob") and untagged(bob)
    assert cloud_fake.counters().get("stack_create", 0) == 0
    assert {"LNX101_2024_T1_ada", "LNX101_2024_T1_bob"} <= site.stacks()

    # Bob comes back: his block asks for the course run's lab, the same stack is resumed.
    spec = LabSpec(course_run=COURSE, lab_key=LEGACY_LAB_GROUP, stack_user="student", protocol="rdp",
                   providers=(ProviderChoice("default", None, keyless_template(engine.lab_port.port)),))
    request_launch(site.bob, spec, actor=f"learner:{site.bob.pk}")
    wait_for("bob's lab to be ready", lambda: Lab.objects.get(pk=bob.pk).state == State.READY, timeout=30)
    bob = Lab.objects.get(pk=bob.pk)
    assert bob.stack_name == "LNX101_2024_T1_bob" and bob.private_key == OLD_KEY  # only the old row had it
    assert bob.ip == "127.0.0.1" and cloud_fake.counters().get("stack_resume", 0) == 1
    assert cloud_fake.counters().get("stack_create", 0) == 0
    # Running now, Bob's stack is tagged by the next run, and from the next audit on it is listed.
    assert line_of(migrate("--adopt"), "LNX101_2024_T1_bob").endswith("already adopted; tagged")
    wait_for("an audit seeing Bob's stack in the tagged list", lambda: not untagged(bob), timeout=30)
    assert Lab.objects.get(pk=bob.pk).state == State.READY
    assert not LabEvent.objects.filter(lab_id__in=[ada.pk, bob.pk], reason="out_of_sync").exists()


def untagged(lab: Lab) -> bool:
    return UNTAGGED in Lab.objects.get(pk=lab.pk).provider_state
