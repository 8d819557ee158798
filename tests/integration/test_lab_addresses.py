"""Lab addresses an operator allows: checked when a stack's outputs are recorded, and again before
every probe, check run and terminal ticket; a refused address is never contacted.

"Never contacted" is shown with a real listener on loopback that counts the connections it
accepts: under the default policy it must see none, and with loopback allowed the same
lab does reach it (so the listener would have noticed). The outputs path runs the whole
engine (real worker, cloud fake); the others call the worker's and the block's code paths
on hand-made lab rows. The terminal handler's answers are in test_block_handlers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from labxblock import labs, messages, tasks
from labxblock.crypto import SecretUnavailable
from labxblock.labs import addressing, checking, engine, jobs
from labxblock.lifecycle import Action, Desired, Reason, State
from labxblock.models import CheckRun, Lab, LabEvent
from tests.engine_harness import LAB_HOST_KEY, LabPort, lab_spec, wait_for

COURSE_RUN = "course-v1:Org+Lab+Run"


@pytest.fixture
def listener() -> Iterator[LabPort]:
    """A port on loopback that counts the connections it gets."""
    found = LabPort()
    yield found
    found.close()


def policy_settings(allowed: list[str] | None) -> dict[str, Any]:
    """The test settings with the default provider's allowed_networks (None: the default policy)."""
    value = copy.deepcopy(settings.XBLOCK_SETTINGS)
    provider = value["labxblock"]["providers"]["default"]
    provider.pop("allowed_networks", None)
    if allowed is not None:
        provider["allowed_networks"] = allowed
    return value


def lab_row(name: str, **fields: Any) -> Lab:
    learner = get_user_model().objects.create_user(username=name, email=f"{name}@example.com")
    values = {"provider": "default", "state": State.READY.value, "desired": Desired.UP.value,
              "stack_user": "training", "outputs": {"host_key": LAB_HOST_KEY}, **fields}
    return Lab.objects.create(learner=learner, course_run=COURSE_RUN, lab_key="lab", **values)


# --- when the outputs are recorded: the whole engine, the cloud fake's outputs, the default policy ---


def template_at(address: str, port: Any) -> str:
    """The engine tests' template, its lab at ``address`` and ``port``."""
    return (lab_spec(1).providers[0].template.replace("value: 127.0.0.1", f"value: {address}")
            .replace("  port:\n    value: 1\n", f"  port:\n    value: {port}\n"))


@pytest.mark.redis
@pytest.mark.slow
def test_outputs_naming_a_refused_address_fail_the_lab_for_its_author_and_nothing_is_contacted(
    engine_factory, cloud_fake, listener
) -> None:
    default_policy = {k: v for k, v in cloud_fake.provider_config.items() if k != "allowed_networks"}
    engine = engine_factory(providers={"default": {"type": "openstack", **default_policy}})
    cases = {
        "loopback": ("127.0.0.1", listener.port, "lab address 127.0.0.1 is not allowed: loopback"),
        "metadata": ("169.254.169.254", 80, "lab address 169.254.169.254 is not allowed: link-local"),
        "bad-port": ("192.0.2.10", 70000, "lab port 70000 is not a port number (1-65535)"),
    }
    launched = {}
    for name, (address, port, _) in cases.items():
        spec = labs.LabSpec(course_run=COURSE_RUN, lab_key=name,
                            providers=(labs.ProviderChoice("default", None, template_at(address, port)),))
        launched[name] = (spec, labs.request_launch(engine.user(name), spec, actor="learner").lab_id)

    def failed() -> bool:
        states = Lab.objects.filter(pk__in=[i for _, i in launched.values()]).values_list("state", flat=True)
        return set(states) == {State.FAILED}

    wait_for("every lab failed", failed, timeout=40)
    for name, (_, _, words) in cases.items():
        spec, lab_id = launched[name]
        lab = Lab.objects.get(pk=lab_id)
        assert lab.status_reason.startswith(f"bad_address: {words}"), lab.status_reason
        assert not lab.ip and not lab.private_key  # nothing of the refused outputs was stored
        failures = LabEvent.objects.filter(lab=lab, to_state=State.FAILED, reason__startswith="bad_address")
        assert failures.exists()
        status = labs.get_status(lab.learner, spec.course_run, name)
        assert status.reason == Reason.BAD_ADDRESS
        learner_sees = messages.status_answer(status, status.since, lambda s: s)["error"]
        staff_see = messages.status_answer(status, status.since, lambda s: s, staff=True)["error"]
        assert learner_sees == messages.FAILURES[Reason.BAD_ADDRESS] and words not in learner_sees
        assert "refused by this site's network policy" in learner_sees  # never which rule, nor the address
        assert "For course staff: bad_address; details are in the lab's event log" in staff_see
        assert words not in staff_see  # the address and the rule that refused it: for operators
    assert listener.accepted == 0


# --- before every probe ---


def probe(lab: Lab) -> str:
    """The worker's probe job for ``lab`` (STARTING, outputs read), carried out here."""
    return tasks.carry_out(engine.Job(lab.pk, Action.PROBE, State.STARTING))


@pytest.mark.django_db
def test_a_probe_never_connects_to_a_refused_address(listener) -> None:
    refused = lab_row("ada", state=State.STARTING.value, ip="127.0.0.1", port=listener.port)
    with override_settings(XBLOCK_SETTINGS=policy_settings(None)):  # e.g. the operator narrowed it
        assert probe(refused) == jobs.REFUSED
    refused.refresh_from_db()
    assert refused.state == State.FAILED
    assert refused.status_reason == "bad_address: lab address 127.0.0.1 is not allowed: loopback"
    assert listener.accepted == 0

    allowed = lab_row("grace", state=State.STARTING.value, ip="127.0.0.1", port=listener.port)
    with override_settings(XBLOCK_SETTINGS=policy_settings(["127.0.0.0/8"])):
        assert probe(allowed) == "done"
    assert Lab.objects.get(pk=allowed.pk).state == State.READY and listener.accepted == 1


@pytest.mark.django_db
def test_the_sites_own_services_are_refused_inside_an_allowed_network() -> None:
    caches = {**settings.CACHES, "shared": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                            "LOCATION": "redis://10.9.8.7:6379/0"}}
    open_edx = {"DOC_STORE_CONFIG": {"host": "10.9.8.20", "port": 27017}, "EMAIL_HOST": "10.9.8.21",
                "ELASTIC_SEARCH_CONFIG": [{"host": "10.9.8.22", "port": 9200}],
                "MEILISEARCH_URL": "http://10.9.8.23:7700", "ALLOWED_HOSTS": ["10.9.8.24", "*"]}
    with override_settings(XBLOCK_SETTINGS=policy_settings(["10.0.0.0/8"]), CACHES=caches, **open_edx):
        for address in ("10.9.8.7", "10.9.8.20", "10.9.8.21", "10.9.8.22", "10.9.8.23", "10.9.8.24"):
            with pytest.raises(addressing.AddressRefused, match=rf"{address} is not allowed: an address of"):
                addressing.check("default", address, 22)
        assert addressing.check("default", "10.9.8.6", 22) == ("10.9.8.6", 22)
    assert addressing.check("default", "127.0.0.1", 22) == ("127.0.0.1", 22)  # CACHES as it was again


# --- before every check run ---


@pytest.mark.django_db
def test_a_check_run_never_connects_to_a_refused_address(listener) -> None:
    lab = lab_row("ada", ip="127.0.0.1", port=listener.port)
    checks = [{"name": "ok", "script": "true", "weight": 1.0, "hint": "", "host": "", "timeout": 5}]
    with override_settings(XBLOCK_SETTINGS=policy_settings(None)):
        checking.request_check(lab.learner, COURSE_RUN, "lab", "block-1", checks, actor="learner")
        run = CheckRun.objects.get()
        assert tasks.run_checks(run.pk) == "stale"  # nothing to run: the claim refused the address
    run.refresh_from_db()
    assert (run.state, run.reason, run.score) == (CheckRun.State.FAILED, checking.BAD_ADDRESS, None)
    answer = messages.check_answer(checking.latest_runs(lab.learner, COURSE_RUN, "block-1"), "full", str)
    assert answer["message"] == messages.CHECK_FAILED["bad_address"]
    assert listener.accepted == 0


# --- before every terminal ticket ---


@pytest.mark.django_db
def test_terminal_access_refuses_before_it_decrypts_any_secret() -> None:
    # Secrets sealed with a key the site no longer has: reading one would raise SecretUnavailable.
    other_keys = policy_settings(None)
    other_keys["labxblock"]["secret_keys"] = [Fernet.generate_key().decode()]
    with override_settings(XBLOCK_SETTINGS=other_keys):
        lab = lab_row("ada", ip="127.0.0.1", port=22, private_key="k" * 40, password="p" * 20)
    with override_settings(XBLOCK_SETTINGS=policy_settings(None)):
        with pytest.raises(addressing.AddressRefused, match=r"127\.0\.0\.1 is not allowed: loopback"):
            labs.terminal_access(lab.learner, COURSE_RUN, "lab")
        with pytest.raises(addressing.BadPort, match="lab port 0 is not a port number"):
            labs.terminal_access(lab.learner, COURSE_RUN, "lab", port=0)
    with pytest.raises(SecretUnavailable):  # loopback allowed (the test settings): now they are read
        labs.terminal_access(lab.learner, COURSE_RUN, "lab", port=2222)
