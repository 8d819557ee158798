"""Lab and LabEvent on a real database (SQLite, and MariaDB with LABXBLOCK_TEST_DB=mariadb)."""

from __future__ import annotations

import copy
import html
import io
import json
import re
import sys
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import serializers
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from labxblock.crypto import SecretUnavailable
from labxblock.labs import engine, jobs
from labxblock.lifecycle import Action, Desired, State
from labxblock.models import REDACTED, CheckRun, Lab, LabEvent, derive_stack_name, reencrypt_secrets

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db]

PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBm3TnR5JmWz0pDWm9rZUtleU5vdFJlYWxseUFLZXlKdXN0VGVzdERhdGEA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
PASSWORD = "Tr0ub4dor&3-lab-password"


@pytest.fixture
def learner(db):
    return get_user_model().objects.create_user(
        username="ada.lovelace", email="ada@example.org", password="learner-login-pw"
    )


def make_lab(learner, lab_key="default", **kwargs) -> Lab:
    return Lab.objects.create(
        learner=learner, course_run="course-v1:Org+Course+Run", lab_key=lab_key, provider="default", **kwargs
    )


def xblock_settings_with(**changes):
    from django.conf import settings

    value = copy.deepcopy(settings.XBLOCK_SETTINGS)
    value["labxblock"].update(changes)
    return value


def first_fernet() -> Fernet:
    from django.conf import settings

    return Fernet(settings.XBLOCK_SETTINGS["labxblock"]["secret_keys"][0])


def raw_columns(lab_id: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key, password FROM labxblock_lab WHERE id = %s", [lab_id])
        return cursor.fetchone()


def test_one_lab_per_learner_course_run_and_lab_key(learner):
    make_lab(learner)
    make_lab(learner, lab_key="other")  # another lab key is another lab
    with pytest.raises(IntegrityError), transaction.atomic():
        make_lab(learner)


def test_stack_name_is_derived_short_unique_and_anonymous(learner):
    labs = [make_lab(learner, lab_key=f"k{i}") for i in range(20)]
    names = [lab.stack_name for lab in labs]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= 64
        assert name.startswith("lab-test-")
        # the rest is 16 random hex digits: no room for a name, e-mail or user id
        suffix = name.removeprefix("lab-test-")
        assert len(suffix) == 16 and all(c in "0123456789abcdef" for c in suffix)
    assert len(derive_stack_name("a" * 20)) <= 64


def test_stack_name_carries_no_personal_data(learner):
    name = make_lab(learner).stack_name
    # install id + 16 random hex digits and nothing else: no username, e-mail,
    # user id or course in the name the cloud operator sees
    assert re.fullmatch(r"lab-test-[0-9a-f]{16}", name), name
    assert "lovelace" not in name and "example" not in name


def test_stack_name_is_stable_once_set(learner):
    lab = make_lab(learner)
    name = lab.stack_name
    lab.state = State.CREATING
    lab.save()
    lab.refresh_from_db()
    assert lab.stack_name == name


def test_secrets_round_trip(learner):
    lab = make_lab(learner, private_key=PRIVATE_KEY, password=PASSWORD)
    fresh = Lab.objects.get(pk=lab.pk)
    assert fresh.private_key == PRIVATE_KEY
    assert fresh.password == PASSWORD
    empty = make_lab(learner, lab_key="empty")
    assert Lab.objects.get(pk=empty.pk).password == ""


def test_database_columns_hold_no_plaintext_secret(learner):
    lab = make_lab(learner, private_key=PRIVATE_KEY, password=PASSWORD)
    lab.status_reason = "saved again"
    lab.save()
    raw_key, raw_password = raw_columns(lab.pk)
    assert raw_key and raw_password
    assert PASSWORD not in raw_key + raw_password
    for line in PRIVATE_KEY.splitlines():
        assert line not in raw_key
    # it is a Fernet token that the configured key opens
    assert first_fernet().decrypt(raw_password.encode()).decode() == PASSWORD


def test_the_check_accounts_key_is_kept_like_the_learners(learner):
    """Outputs check_user (plain) and check_private_key (encrypted, rotated, scrubbed, reset).

    The operator's ``secret_outputs`` here leaves the check key out: it is secret all the same.
    """
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    check_key = PRIVATE_KEY.replace("b3Bl", "Y2hl")
    outputs = {"public_ip": "127.0.0.1", "private_key": PRIVATE_KEY, "check_user": "checker",
               "check_private_key": check_key}
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[old], secret_outputs=["*_pw"])):
        lab, claim = starting_lab(learner)
        assert jobs.record_outputs(claim, outputs) == jobs.STORED
        fresh = Lab.objects.get(pk=lab.pk)
        assert fresh.outputs == {"public_ip": "127.0.0.1", "check_user": "checker"}
        assert fresh.secret_output("check_private_key") == check_key
        assert check_key in fresh.known_secrets()  # scrubbed from check output and reasons
    with connection.cursor() as cursor:
        cursor.execute("SELECT outputs, secret_outputs FROM labxblock_lab WHERE id = %s", [lab.pk])
        raw_outputs, raw_secrets = cursor.fetchone()
    assert "Y2hl" not in raw_outputs + raw_secrets
    assert json.loads(Fernet(old).decrypt(raw_secrets.encode()))["check_private_key"] == check_key
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[new, old])):
        assert reencrypt_secrets() == 1
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[new])):
        fresh = Lab.objects.get(pk=lab.pk)
        assert fresh.secret_output("check_private_key") == check_key
        # The stack is gone: the lab is made afresh, and the old stack's check account is forgotten.
        Lab.objects.filter(pk=lab.pk).update(state=State.READY, desired=Desired.UP)
        engine.apply(Lab.objects.get(pk=lab.pk), engine.Observation(None), timezone.now(), "reconciler")
        fresh = Lab.objects.get(pk=lab.pk)
        assert fresh.state == State.REQUESTED
        assert fresh.secret_output("check_private_key") == "" and "check_user" not in fresh.outputs


def test_a_check_key_left_in_plain_outputs_is_hidden_in_the_admin_and_moved(learner, admin_client):
    """A row from a site whose secret_outputs left the check key out: it is secret all the same."""
    check_key = PRIVATE_KEY.replace("b3Bl", "Y2hl")
    plain = {"public_ip": "192.0.2.7", "check_user": "checker", "check_private_key": check_key}
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_outputs=["*_pw"])):
        lab = make_lab(learner, outputs=plain)
        page = admin_client.get(f"/admin/labxblock/lab/{lab.pk}/change/").content.decode()
        assert "checker" in page and not [line for line in check_key.splitlines()[1:3] if line in page]
        assert reencrypt_secrets() == 1
        lab.refresh_from_db()
        assert lab.outputs == {"public_ip": "192.0.2.7", "check_user": "checker"}
        assert lab.secret_output("check_private_key") == check_key


def test_saving_without_reading_keeps_the_token(learner):
    lab = make_lab(learner, password=PASSWORD)
    before = raw_columns(lab.pk)
    fresh = Lab.objects.get(pk=lab.pk)
    fresh.state = State.CREATING
    fresh.save()
    assert raw_columns(lab.pk) == before


def test_key_rotation(learner):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    others = json.dumps({"admin_password": "Adm1n-only-in-the-lab"})
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[old])):
        lab = make_lab(learner, private_key=PRIVATE_KEY, password=PASSWORD, secret_outputs=others)
    old_token = raw_columns(lab.pk)[1]

    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[new, old])):
        assert Lab.objects.get(pk=lab.pk).password == PASSWORD  # old key still decrypts
        assert reencrypt_secrets() == 1
        new_token = raw_columns(lab.pk)[1]
        assert new_token != old_token
        assert Fernet(new).decrypt(new_token.encode()).decode() == PASSWORD
        raw_others = Lab.objects.filter(pk=lab.pk).values_list("secret_outputs", flat=True).get()
        assert Fernet(new).decrypt(raw_others.encode()).decode() == others  # every secret column
        # new writes use the first key
        other = make_lab(learner, lab_key="other", password="x")
        Fernet(new).decrypt(raw_columns(other.pk)[1].encode())

    # the old key can now be removed
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[new])):
        fresh = Lab.objects.get(pk=lab.pk)
        assert (fresh.private_key, fresh.password) == (PRIVATE_KEY, PASSWORD)


def test_the_reencrypt_subcommand_rotates_keys_and_names_a_lab_no_key_opens(learner):
    """``manage.py lms labxblock reencrypt``: the operator's way to run the rotation."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[old])):
        lab = make_lab(learner, password=PASSWORD)
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[new, old])):
        out = io.StringIO()
        call_command("labxblock", "reencrypt", stdout=out)
        assert "reencrypt: 1 lab(s) rewritten" in out.getvalue()
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[new])):
        assert Lab.objects.get(pk=lab.pk).password == PASSWORD  # the old key is no longer needed
    with override_settings(XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[old])):  # the new key dropped
        before = raw_columns(lab.pk)
        with pytest.raises(CommandError, match=rf"Lab.password \(id {lab.pk}\).*put back the key") as info:
            call_command("labxblock", "reencrypt", stdout=io.StringIO())
        assert PASSWORD not in str(info.value) and raw_columns(lab.pk) == before


def test_missing_key_gives_a_clear_error(learner):
    lab = make_lab(learner, password=PASSWORD)
    with override_settings(
        XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[Fernet.generate_key().decode()])
    ):
        fresh = Lab.objects.get(pk=lab.pk)  # loading the row works: decryption is on read
        assert fresh.state == State.REQUESTED
        with pytest.raises(SecretUnavailable) as info:
            _ = fresh.password
        message = str(info.value)
        assert f"Lab.password (id {lab.pk})" in message
        assert "labxblock.secret_keys" in message
        assert PASSWORD not in message
        with pytest.raises(SecretUnavailable):
            reencrypt_secrets()
        fresh.state = State.FAILED
        fresh.save()  # an unreadable secret does not stop the row from being updated
    assert Lab.objects.get(pk=lab.pk).password == PASSWORD


def test_outputs_and_provider_state_are_json(learner):
    lab = make_lab(learner, outputs={"public_ip": "192.0.2.7", "host_key": "ssh-ed25519 AAAA"})
    lab.provider_state = {"id": "0b1c", "region": "r1"}
    lab.save()
    fresh = Lab.objects.get(pk=lab.pk)
    assert fresh.outputs["public_ip"] == "192.0.2.7"
    assert fresh.provider_state == {"id": "0b1c", "region": "r1"}


def test_event_record_copies_identity_and_survives_lab_deletion(learner):
    lab = make_lab(learner)
    lab.state = State.CREATING
    event = LabEvent.record(lab, actor="reconciler", from_state=State.REQUESTED, reason="create accepted")
    assert (event.from_state, event.to_state, event.desired) == ("requested", "creating", Desired.UP)
    lab.delete()
    event.refresh_from_db()
    assert event.lab is None
    assert (event.stack_name, event.course_run, event.learner_id) == (
        lab.stack_name,
        "course-v1:Org+Course+Run",
        learner.pk,
    )


def test_events_are_append_only(learner):
    lab = make_lab(learner)
    event = LabEvent.record(lab, actor="system", reason="created")
    event.reason = "rewritten history"
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        LabEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    event.refresh_from_db()
    assert event.reason == "created"


def test_events_never_store_the_labs_secrets(learner):
    lab = make_lab(learner, private_key=PRIVATE_KEY, password=PASSWORD)
    leaky = f"cloud said: bad password {PASSWORD!r} for key\n{PRIVATE_KEY}"
    event = LabEvent.record(lab, actor="reconciler", reason=leaky)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reason FROM labxblock_labevent WHERE id = %s", [event.pk])
        (stored,) = cursor.fetchone()
    assert PASSWORD not in stored
    assert "PRIVATE KEY" not in stored
    assert all(line not in stored for line in PRIVATE_KEY.splitlines()[1:3])
    assert stored.startswith("cloud said: bad password") and REDACTED in stored


def test_events_scrub_pem_keys_even_without_the_labs_key(learner):
    lab = make_lab(learner, password=PASSWORD)
    with override_settings(
        XBLOCK_SETTINGS=xblock_settings_with(secret_keys=[Fernet.generate_key().decode()])
    ):
        event = LabEvent.record(lab, actor="reconciler", reason=f"output was {PRIVATE_KEY}")
    assert "PRIVATE KEY" not in event.reason


def test_deleting_a_learner_removes_the_lab_row_but_keeps_events(learner):
    lab = make_lab(learner)
    LabEvent.record(lab, actor="system", reason="created")
    learner.delete()
    assert not Lab.objects.filter(pk=lab.pk).exists()
    events = LabEvent.objects.filter(stack_name=lab.stack_name)
    assert {(event.lab_id, event.learner_id) for event in events} == {(None, None)}
    # The row's end is logged, so usage accounting does not count the lab as up for ever.
    assert [(e.reason, e.to_state) for e in events] == [
        ("created", "requested"), ("lab row deleted", "deleted")]


def test_idle_query_finds_only_idle_labs(learner):
    now = timezone.now()
    idle = make_lab(learner, lab_key="idle", state=State.READY, last_seen_at=now - timedelta(minutes=5))
    make_lab(learner, lab_key="busy", state=State.READY, last_seen_at=now)
    found = Lab.objects.filter(
        desired=Desired.UP, state=State.READY, last_seen_at__lt=now - timedelta(seconds=120)
    )
    assert list(found) == [idle]


def test_migrations_are_up_to_date_for_the_whole_project():
    """No app wants a migration under edx-platform's DEFAULT_AUTO_FIELD (AutoField): not edx-submissions,
    and not labxblock, whose own models keep BigAutoField through its AppConfig."""
    assert settings.DEFAULT_AUTO_FIELD == "django.db.models.AutoField"
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)  # SystemExit if not
    assert "No changes detected" in out.getvalue()
    for model in (Lab, LabEvent, CheckRun):
        assert type(model._meta.pk).__name__ == "BigAutoField", model


def test_dump_and_load_carry_tokens_not_plaintext(learner):
    lab = make_lab(learner, private_key=PRIVATE_KEY, password=PASSWORD)
    dump = serializers.serialize("json", Lab.objects.filter(pk=lab.pk))
    assert PASSWORD not in dump and "PRIVATE KEY" not in dump
    Lab.objects.filter(pk=lab.pk).delete()
    for obj in serializers.deserialize("json", dump):
        obj.save()
    stored = raw_columns(lab.pk)[1]
    assert PASSWORD not in stored
    assert first_fernet().decrypt(stored.encode()).decode() == PASSWORD  # encrypted once, not twice
    assert Lab.objects.get(pk=lab.pk).password == PASSWORD


def test_admin_never_shows_secrets(learner, rf, admin_user):
    from django.contrib.admin.sites import site

    lab = make_lab(learner, password=PASSWORD)
    LabEvent.record(lab, actor="system", reason="created")
    request = rf.get("/")
    request.user = admin_user
    lab_admin = site._registry[Lab]
    form = lab_admin.get_form(request, lab)
    assert not {"private_key", "password", "secret_outputs", "outputs"} & set(form.base_fields)
    secret_columns = {"private_key", "password", "secret_outputs"}
    assert lab_admin.get_queryset(request).query.deferred_loading == (secret_columns, True)
    event_admin = site._registry[LabEvent]
    event = LabEvent.objects.get(lab=lab)
    assert not event_admin.has_change_permission(request, event)
    assert not event_admin.has_add_permission(request)
    assert not event_admin.has_delete_permission(request, event)


ADMIN_PASSWORD = "Adm1n-only-in-the-lab"


def starting_lab(learner, **fields) -> tuple[Lab, jobs.Claim]:
    """A lab whose stack just came up, and the worker's claim for its first probe."""
    lab = make_lab(learner, state=State.STARTING, **fields)
    claim = jobs.claim(engine.Job(lab.pk, Action.PROBE, State.STARTING))
    assert claim is not None
    return lab, claim


def test_every_secret_output_is_encrypted_at_rest_and_absent_from_the_admin(learner, admin_client):
    lab, claim = starting_lab(learner)
    outputs = {"public_ip": "127.0.0.1", "private_key": PRIVATE_KEY, "password": PASSWORD,
               "admin_password": ADMIN_PASSWORD, "api_key": "k-123-secret-value", "web_url": "http://lab.test/"}
    assert jobs.record_outputs(claim, outputs) == jobs.STORED
    lab.refresh_from_db()
    assert lab.outputs == {"public_ip": "127.0.0.1", "web_url": "http://lab.test/"}
    assert lab.secret_output("admin_password") == ADMIN_PASSWORD and lab.secret_output("api_key")
    assert ADMIN_PASSWORD in lab.known_secrets()  # so reasons and check output are scrubbed of it too
    with connection.cursor() as cursor:
        cursor.execute("SELECT outputs, secret_outputs FROM labxblock_lab WHERE id = %s", [lab.pk])
        raw_outputs, raw_secrets = cursor.fetchone()
    assert ADMIN_PASSWORD not in raw_outputs + raw_secrets and "k-123-secret-value" not in raw_secrets
    assert ADMIN_PASSWORD in first_fernet().decrypt(raw_secrets.encode()).decode()

    page = admin_client.get(f"/admin/labxblock/lab/{lab.pk}/change/").content.decode()
    assert lab.stack_name in page and "http://lab.test/" in page  # the lab and its plain outputs
    for secret in (ADMIN_PASSWORD, "k-123-secret-value", PASSWORD, *PRIVATE_KEY.splitlines()[1:3]):
        assert secret not in page


def test_a_cloud_reason_quoting_a_key_and_the_password_is_stored_without_the_key_and_shown_without_both(
    learner, admin_client
):
    lab = make_lab(learner, password=PASSWORD, state=State.CREATING)
    said = (f"Resource CREATE failed: OS::Nova::Server lab: user_data {PRIVATE_KEY} "
            f"chpasswd training:{PASSWORD} rejected")
    obs = engine.Observation(State.FAILED, raw_status="CREATE_FAILED", reason=said)
    engine.apply(Lab.objects.get(pk=lab.pk), obs, timezone.now(), "reconciler")
    with connection.cursor() as cursor:
        cursor.execute("SELECT raw_status, raw_reason FROM labxblock_lab WHERE id = %s", [lab.pk])
        raw_status, stored = cursor.fetchone()
    assert raw_status == "CREATE_FAILED" and stored.startswith("Resource CREATE failed")
    assert "BEGIN OPENSSH" not in stored and REDACTED in stored  # no private key is ever stored

    page = admin_client.get(f"/admin/labxblock/lab/{lab.pk}/change/").content.decode()
    assert "Resource CREATE failed: OS::Nova::Server lab: user_data [redacted]" in page
    for secret in (PASSWORD, html.escape(PASSWORD), *PRIVATE_KEY.splitlines()[1:3]):
        assert secret not in page  # neither in the raw reason nor in the status reason


def test_reencrypt_moves_secret_outputs_left_in_plain_outputs_into_the_encrypted_column(
    learner, admin_client
):
    # A row written before secret_outputs existed: admin_password in the plain JSON.
    plain = {"public_ip": "192.0.2.7", "admin_password": ADMIN_PASSWORD}
    lab = make_lab(learner, password=PASSWORD, outputs=plain)
    page = admin_client.get(f"/admin/labxblock/lab/{lab.pk}/change/").content.decode()
    assert "192.0.2.7" in page and ADMIN_PASSWORD not in page  # hidden even before it is moved
    assert reencrypt_secrets() == 1
    lab.refresh_from_db()
    assert lab.outputs == {"public_ip": "192.0.2.7"}
    assert lab.secret_output("admin_password") == ADMIN_PASSWORD and lab.password == PASSWORD


def test_status_reason_is_scrubbed_wherever_it_is_written(learner):
    leaky = f"cloud said: password {PASSWORD} refused; admin_password={ADMIN_PASSWORD}; key {PRIVATE_KEY}"
    others = json.dumps({"admin_password": ADMIN_PASSWORD})
    lab, claim = starting_lab(learner, password=PASSWORD, secret_outputs=others)

    def stored() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status_reason FROM labxblock_lab WHERE id = %s", [lab.pk])
            return cursor.fetchone()[0]

    def clean(reason: str) -> bool:
        return PASSWORD not in reason and ADMIN_PASSWORD not in reason and "PRIVATE KEY" not in reason

    jobs.record_call_failed(claim, leaky)  # a cloud call's error, retries spent
    assert stored().startswith("cloud said: password [redacted] refused; admin_password=[redacted]")
    # The cloud reports the stack failed, quoting a secret: the reconciler fails the lab.
    engine.apply(Lab.objects.get(pk=lab.pk), engine.Observation(State.FAILED, "CREATE_FAILED", leaky),
                 timezone.now(), "reconciler")
    assert stored().startswith("stack_failed: cloud said: password [redacted]") and clean(stored())
    Lab.objects.filter(pk=lab.pk).update(state=State.CREATING)
    creating = jobs.claim(engine.Job(lab.pk, Action.CREATE, State.CREATING))
    jobs.record_refused(creating, leaky)  # the provider refused the create, and no other is left
    assert stored().startswith("create_failed: cloud said: password [redacted]") and clean(stored())
    assert all(clean(reason) for reason in LabEvent.objects.filter(lab=lab).values_list("reason", flat=True))


# --- secret outputs in a worker's frames (what a traceback with locals or an error reporter shows) ---

WATCHED = ("probe_lab", "record_outputs", "output_fields")


def frame_reprs(call) -> dict[str, str]:
    """Run ``call``; the repr of every local of the watched worker functions as they return."""
    seen: dict[str, str] = {}

    def tracer(frame, event, arg):
        if frame.f_code.co_name not in WATCHED or not frame.f_globals["__name__"].startswith("labxblock"):
            return None

        def local(frame, event, arg):
            if event == "return":
                seen[frame.f_code.co_name] = repr(dict(frame.f_locals))
            return local

        return local

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return seen


def test_a_stacks_secret_outputs_are_secrets_in_the_workers_frames(learner, cloud_fake) -> None:
    from labxblock import clouds, tasks
    from labxblock.labs import adoption
    from labxblock.providers.base import StackSpec
    from tests.engine_harness import active_lab_settings, lab_settings, lab_template, wait_for

    outputs = ("  db_password:\n    value: db-Pw-4f1e9a77c2\n"  # secret by the default rule
               "  api_token:\n    value: tok-8c2d5e61b0aa\n"  # by this site's rule only
               "  web_url:\n    value: http://lab.test/\n")
    site = lab_settings({"default": {"type": "openstack", **cloud_fake.provider_config}},
                        secret_outputs=["*_password", "*_token"])
    with active_lab_settings(site):
        provider = clouds.provider("default")
        lab = make_lab(learner, state=State.STARTING, stack_user="training")
        ref = provider.create(StackSpec(name=lab.stack_name, template=lab_template(1) + outputs,
                                        parameters={"run": "x"}, tags=(jobs.install_tag(),)))
        Lab.objects.filter(pk=lab.pk).update(provider_state=provider.get_state(ref))
        wait_for("the stack", lambda: provider.get(ref).state == State.READY, timeout=20)
        info = provider.get(ref)
        secrets_ = [str(info.outputs[k]) for k in ("private_key", "password", "db_password", "api_token")]
        assert "db-Pw-4f1e9a77c2" in secrets_ and "tok-8c2d5e61b0aa" in secrets_
        # The provider's StackInfo hides what the default rule calls secret, knowing no settings.
        assert "db-Pw-4f1e9a77c2" not in repr(dict(info.outputs)) and "http://lab.test/" in repr(info.outputs)
        frames = frame_reprs(lambda: tasks.carry_out(engine.Job(lab.pk, Action.PROBE, State.STARTING)))
        assert set(frames) == set(WATCHED)
        for name, shown in frames.items():
            assert not [s for s in secrets_ if s in shown or s.splitlines()[0] in shown], name
        assert "Secret('…')" in frames["record_outputs"] and "Secret('…')" in frames["output_fields"]
        stored = Lab.objects.get(pk=lab.pk)
        assert stored.secret_output("api_token") == "tok-8c2d5e61b0aa"  # still the value where it is used
        assert stored.outputs["web_url"] == "http://lab.test/"

        # A stack adopted from stackamole: its outputs and the old row's secrets, hidden the same way.
        old_row = {"ip": "10.0.0.1", "password": "old-Pw-1"}
        stray = adoption.Stray(stack_name="old", learner_id=learner.pk, course_run="c", lab_key="k",
                               provider="default", provider_state={}, state=State.READY,
                               outputs=dict(info.outputs), fallback=old_row)
        assert not [s for s in (*secrets_, "old-Pw-1") if s in repr(stray.outputs) + repr(stray.fallback)]
        assert "10.0.0.1" in repr(stray.fallback)
