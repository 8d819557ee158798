"""The openstack provider's pure parts: status mapping, request builders, error mapping, config rules."""

from __future__ import annotations

import itertools
import json

import pytest
import requests
from heatclient import exc as heat_exc
from keystoneauth1 import exceptions as ks_exc
from novaclient import exceptions as nova_exc

from labxblock.lifecycle import State
from labxblock.providers.base import (
    NoAnswer,
    NotFound,
    PermanentError,
    QuotaExceeded,
    StackRef,
    StackSpec,
    TemporaryError,
)
from labxblock.providers.openstack import cloud_error, create_body, stack_info, stack_path, truthy
from labxblock.providers.openstack_config import auth_kwargs, check_config, keystone_v3_url, timeouts
from labxblock.providers.openstack_status import ACTIONS, STATUSES, heat_state, outputs_are_final

# --- status mapping ---------------------------------------------------------------------

# The states StackInfo may carry (base.py): never REQUESTED or STARTING, which are ours alone.
PROVIDER_STATES = {State.CREATING, State.READY, State.SUSPENDING, State.SUSPENDED, State.RESUMING,
                   State.DELETING, State.DELETED, State.FAILED}

EXPECTED = {
    "INIT_IN_PROGRESS": State.CREATING, "INIT_COMPLETE": State.CREATING, "INIT_FAILED": State.FAILED,
    "CREATE_IN_PROGRESS": State.CREATING, "CREATE_COMPLETE": State.READY, "CREATE_FAILED": State.FAILED,
    "ADOPT_IN_PROGRESS": State.CREATING, "ADOPT_COMPLETE": State.READY, "ADOPT_FAILED": State.FAILED,
    "UPDATE_IN_PROGRESS": State.CREATING, "UPDATE_COMPLETE": State.READY, "UPDATE_FAILED": State.FAILED,
    "RESTORE_IN_PROGRESS": State.CREATING, "RESTORE_COMPLETE": State.READY,
    "RESTORE_FAILED": State.FAILED,
    "SUSPEND_IN_PROGRESS": State.SUSPENDING, "SUSPEND_COMPLETE": State.SUSPENDED,
    "SUSPEND_FAILED": State.FAILED,
    "RESUME_IN_PROGRESS": State.RESUMING, "RESUME_COMPLETE": State.READY, "RESUME_FAILED": State.FAILED,
    "DELETE_IN_PROGRESS": State.DELETING, "DELETE_COMPLETE": State.DELETED, "DELETE_FAILED": State.FAILED,
    "ROLLBACK_IN_PROGRESS": State.FAILED, "ROLLBACK_COMPLETE": State.FAILED,
    "ROLLBACK_FAILED": State.FAILED,
    "CHECK_IN_PROGRESS": State.READY, "CHECK_COMPLETE": State.READY, "CHECK_FAILED": State.FAILED,
    "SNAPSHOT_IN_PROGRESS": State.READY, "SNAPSHOT_COMPLETE": State.READY,
    "SNAPSHOT_FAILED": State.FAILED,
}


def test_every_heat_status_has_an_expected_state() -> None:
    every = {f"{a}_{s}" for a, s in itertools.product(ACTIONS, STATUSES)}
    assert every == set(EXPECTED)


@pytest.mark.parametrize(("raw", "state"), sorted(EXPECTED.items()))
def test_heat_status_maps_to_our_state(raw: str, state: State) -> None:
    assert heat_state(raw) == state
    assert state in PROVIDER_STATES


@pytest.mark.parametrize(("raw", "reason", "state"), [
    # A delete of a stack in progress stops the action first: that is the delete at work.
    ("CREATE_FAILED", "Stack CREATE cancelled", State.DELETING),
    ("SUSPEND_FAILED", "Stack SUSPEND cancelled", State.DELETING),
    ("RESUME_FAILED", "Stack RESUME cancelled", State.DELETING),
    # An operator's cancel of an update says the same, then rolls back: not ours to call deleting.
    ("UPDATE_FAILED", "Stack UPDATE cancelled", State.FAILED),
    ("CREATE_FAILED", "Stack SUSPEND cancelled", State.FAILED),  # not the action that failed
    ("CREATE_FAILED", "Resource CREATE failed: Stack CREATE cancelled", State.FAILED),
    ("CREATE_FAILED", "Resource CREATE failed: ValueError", State.FAILED),
])
def test_a_delete_cancelling_an_action_is_deleting(raw: str, reason: str, state: State) -> None:
    assert heat_state(raw, reason) == state
    assert stack_info({"stack_status": raw, "stack_status_reason": reason}).state == state


@pytest.mark.parametrize("raw", ["", "CREATE", "FROB_COMPLETE", "CREATE_WOBBLY", "_COMPLETE"])
def test_unknown_statuses_are_failed_not_usable(raw: str) -> None:
    assert heat_state(raw) == State.FAILED


def test_status_case_does_not_matter() -> None:
    assert heat_state("create_complete") == State.READY


def test_outputs_are_read_only_when_usable() -> None:
    final = {raw for raw in EXPECTED if outputs_are_final(raw)}
    assert final == {"CREATE_COMPLETE", "ADOPT_COMPLETE", "UPDATE_COMPLETE", "RESTORE_COMPLETE",
                     "RESUME_COMPLETE", "CHECK_COMPLETE", "SNAPSHOT_COMPLETE"}


# --- request builders and readers -------------------------------------------------------

SPEC = StackSpec(name="lab-abc", template="heat_template_version: 2018-08-31\n",
                 environment="parameter_defaults:\n  flavor: m1.small\n",
                 parameters={"run": "run-7"}, tags=("site-1", "course-x"))


def test_create_body() -> None:
    body = create_body(SPEC, create_timeout=1801)
    assert body == {
        "stack_name": "lab-abc", "template": SPEC.template,
        "environment": {"parameter_defaults": {"flavor": "m1.small"}}, "files": {},
        "parameters": {"run": "run-7"}, "tags": "site-1,course-x",
        "disable_rollback": True, "timeout_mins": 31,
    }
    json.dumps(body)  # it is sent as JSON


def test_create_body_without_environment_and_minimum_timeout() -> None:
    body = create_body(StackSpec(name="n", template="t"), create_timeout=5)
    assert body["environment"] == {} and body["tags"] == "" and body["timeout_mins"] == 1


@pytest.mark.parametrize("environment", ["a: [unclosed", "- just\n- a list\n"])
def test_create_body_refuses_a_bad_environment(environment: str) -> None:
    with pytest.raises(PermanentError, match="environment"):
        create_body(StackSpec(name="n", template="t", environment=environment), create_timeout=60)


def test_stack_path_avoids_the_lookup_when_the_id_is_known() -> None:
    assert stack_path(StackRef("lab", {"id": "1234"})) == "lab/1234"
    assert stack_path(StackRef("lab")) == "lab"


def _doc(status: str, **extra: object) -> dict:
    return {"id": "1234", "stack_name": "lab", "stack_status": status, "stack_status_reason": "why",
            "tags": ["site-1"], **extra}


def test_stack_info_reads_outputs_when_complete() -> None:
    outputs = [{"output_key": "public_ip", "output_value": "192.0.2.4"},
               {"output_key": "password", "output_value": None, "output_error": "not ready"}]
    info = stack_info(_doc("CREATE_COMPLETE", outputs=outputs))
    assert info.state == State.READY and info.raw_status == "CREATE_COMPLETE" and info.reason == "why"
    assert info.outputs == {"public_ip": "192.0.2.4"}  # an output in error is not a value
    assert info.ref == StackRef("lab", {"id": "1234"}) and info.tags == ("site-1",)
    assert stack_info(_doc("CREATE_IN_PROGRESS", outputs=outputs)).outputs == {}


def test_stack_info_accepts_tags_as_text_or_missing() -> None:
    assert stack_info(_doc("CREATE_FAILED", tags="a,b")).tags == ("a", "b")
    assert stack_info(_doc("CREATE_FAILED", tags=None)).tags == ()


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), ("true", True), ("Yes", True), (False, False), ("false", False), (None, False), ("", False),
])
def test_truthy_outputs(value: object, expected: bool) -> None:
    assert truthy(value) is expected


# --- error mapping ----------------------------------------------------------------------

def _heat(cls: type, kind: str, message: str) -> Exception:
    return cls(json.dumps({"error": {"type": kind, "message": message, "traceback": "secret trace"}}))


def test_connection_failures_and_timeouts_are_temporary() -> None:
    for error in (ks_exc.ConnectFailure("refused"), ks_exc.ConnectTimeout("Request timed out"),
                  ks_exc.UnknownConnectionError("odd", None)):
        mapped = cloud_error(error, "stack get")
        assert isinstance(mapped, TemporaryError) and mapped.delay > 0


def test_a_request_that_went_out_and_got_no_answer_in_time_says_so() -> None:
    """keystoneauth reports a connect timeout and a read timeout alike; only the second reached the cloud."""
    def timed_out(cause: Exception) -> Exception:
        exc = ks_exc.ConnectTimeout("Request to http://heat/v1/p/stacks timed out")
        exc.__context__ = cause  # what keystoneauth's ``raise`` inside its ``except requests…Timeout`` leaves
        return exc

    unanswered = cloud_error(timed_out(requests.exceptions.ReadTimeout("read timeout=30")), "stack create")
    assert isinstance(unanswered, NoAnswer) and "no answer in time" in str(unanswered)
    unreached = cloud_error(timed_out(requests.exceptions.ConnectTimeout("connect")), "stack create")
    assert isinstance(unreached, TemporaryError) and not isinstance(unreached, NoAnswer)


def test_tls_failure_is_permanent_and_points_at_the_ca_settings() -> None:
    mapped = cloud_error(ks_exc.SSLError("certificate verify failed"), "stack get")
    assert isinstance(mapped, PermanentError) and "cacert" in str(mapped)


def test_server_errors_are_temporary_and_honour_retry_after() -> None:
    error = _heat(heat_exc.HTTPServiceUnavailable, "X", "busy")
    assert cloud_error(error, "stack get", retry_after=30).delay == 30
    assert cloud_error(error, "stack get").delay == 5
    assert isinstance(cloud_error(_heat(heat_exc.HTTPInternalServerError, "X", "boom"), "x"), TemporaryError)
    assert cloud_error(ks_exc.http.ServiceUnavailable(retry_after=12), "auth").delay == 12


def test_auth_refusals_are_permanent_and_say_check_credentials() -> None:
    for error in (_heat(heat_exc.HTTPUnauthorized, "X", "no"), _heat(heat_exc.HTTPForbidden, "X", "no"),
                  ks_exc.http.Unauthorized(), nova_exc.Forbidden(403)):
        mapped = cloud_error(error, "stack create")
        assert isinstance(mapped, PermanentError) and "credentials" in str(mapped)


def test_not_found_and_conflict() -> None:
    assert isinstance(cloud_error(_heat(heat_exc.HTTPNotFound, "EntityNotFound", "gone"), "x"), NotFound)
    assert isinstance(cloud_error(nova_exc.NotFound(404), "server reboot"), NotFound)
    conflict = cloud_error(_heat(heat_exc.HTTPConflict, "ActionInProgress", "busy"), "stack suspend")
    assert isinstance(conflict, TemporaryError)


def test_quota_refusals() -> None:
    limit = _heat(heat_exc.HTTPBadRequest, "RequestLimitExceeded",
                  "Request limit exceeded: You have reached the maximum stacks per tenant")
    assert isinstance(cloud_error(limit, "stack create"), QuotaExceeded)
    assert isinstance(cloud_error(_heat(heat_exc.HTTPOverLimit, "X", "too big"), "x"), QuotaExceeded)
    assert isinstance(cloud_error(nova_exc.OverLimit(413, retry_after=3), "x"), QuotaExceeded)


def test_bad_template_is_permanent_with_heats_explanation_but_no_traceback() -> None:
    error = _heat(heat_exc.HTTPBadRequest, "StackValidationFailed", "Property error: flavor missing")
    mapped = cloud_error(error, "stack create")
    assert isinstance(mapped, PermanentError) and not isinstance(mapped, QuotaExceeded)
    assert "StackValidationFailed: Property error: flavor missing" in str(mapped)
    assert "secret trace" not in str(mapped)


def test_other_errors_are_permanent() -> None:
    assert isinstance(cloud_error(ks_exc.EndpointNotFound("no orchestration"), "x"), PermanentError)
    assert isinstance(cloud_error(heat_exc.HTTPUnsupported("{}"), "x"), PermanentError)
    assert isinstance(cloud_error(ValueError("odd"), "x"), PermanentError)


# --- configuration ----------------------------------------------------------------------

PASSWORD = {"auth_url": "https://keystone.example.org:5000", "username": "labs", "password": "pw",
            "project_name": "labs", "user_domain_name": "Default", "project_domain_name": "Default",
            "region_name": "RegionOne", "interface": "public", "type": "openstack", "capacity": 100,
            "actions_per_minute": 60}
APP = {"auth_url": "https://keystone.example.org/v3", "application_credential_id": "abc",
       "application_credential_secret": "s3"}


def test_good_configs_have_no_problems() -> None:
    assert check_config(PASSWORD) == []
    assert check_config(APP) == []
    assert check_config({**PASSWORD, "project_name": None, "project_domain_name": None,
                         "project_id": "p1", "user_domain_name": None, "user_domain_id": "default"}) == []
    assert check_config({**APP, "application_credential_id": None, "application_credential_name": "n",
                         "username": "u", "user_domain_name": "Default"}) == []
    assert check_config({**APP, "connect_timeout": 2, "read_timeout": 12.5, "create_timeout": 600,
                         "verify": False, "pool_size": 8}) == []


@pytest.mark.parametrize(("change", "key"), [
    ({"auth_url": "keystone:5000"}, "auth_url"),
    ({"auth_url": "ftp://keystone"}, "auth_url"),
    ({"auth_url": "https://u:pw@keystone/v3"}, "auth_url"),
    ({"auth_url": None}, "auth_url"),
    ({"password": ""}, "password"),
    ({"username": None}, "username"),
    ({"user_domain_name": None}, "user_domain_name"),
    ({"project_name": None}, "project_name"),
    ({"project_domain_name": None}, "project_domain_name"),
    ({"interface": "publicURL"}, "interface"),
    ({"region_name": 1}, "region_name"),
    ({"connect_timeout": 0}, "connect_timeout"),
    ({"read_timeout": "30"}, "read_timeout"),
    ({"read_timeout": True}, "read_timeout"),
    ({"create_timeout": -1}, "create_timeout"),
    ({"pool_size": 0}, "pool_size"),
    ({"pool_size": "64"}, "pool_size"),
    ({"verify": "yes"}, "verify"),
    ({"cacert": "/nonexistent/ca.pem"}, "cacert"),
    ({"tenant_name": "old"}, "tenant_name"),
    ({"application_credential_id": "abc", "application_credential_secret": "s"}, "password"),
])
def test_password_config_problems_name_the_key(change: dict, key: str) -> None:
    problems = check_config({**PASSWORD, **change})
    assert key in [k for k, _ in problems], problems
    assert all(expectation for _, expectation in problems)


@pytest.mark.parametrize(("change", "key"), [
    ({"application_credential_secret": None}, "application_credential_secret"),
    ({"application_credential_id": None, "application_credential_name": None,
      "application_credential_secret": "s"}, "application_credential_id"),
    ({"application_credential_id": None, "application_credential_name": "n"}, "username"),
    ({"application_credential_id": None, "application_credential_name": "n", "username": "u"},
     "user_domain_name"),
])
def test_application_credential_config_problems(change: dict, key: str) -> None:
    assert key in [k for k, _ in check_config({**APP, **change})]


def test_cacert_must_exist_and_not_be_contradicted(tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert check_config({**APP, "cacert": str(bundle)}) == []
    assert [k for k, _ in check_config({**APP, "cacert": str(bundle), "verify": False})] == ["verify"]


def test_auth_kwargs_choose_the_plugin_and_normalise_the_url() -> None:
    kind, kwargs = auth_kwargs(PASSWORD)
    assert kind == "password"
    assert kwargs == {"auth_url": "https://keystone.example.org:5000/v3", "username": "labs",
                      "password": "pw", "project_name": "labs", "user_domain_name": "Default",
                      "project_domain_name": "Default"}
    kind, kwargs = auth_kwargs(APP)
    assert kind == "application_credential"
    assert kwargs == {"auth_url": "https://keystone.example.org/v3", "application_credential_id": "abc",
                      "application_credential_secret": "s3"}
    assert keystone_v3_url("http://k/v3/") == "http://k/v3"


def test_timeouts_default_and_override() -> None:
    assert timeouts({}) == (5.0, 30.0)
    assert timeouts({"connect_timeout": 1, "read_timeout": 2}) == (1.0, 2.0)
