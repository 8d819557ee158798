"""The ``terminal`` handler in ``guacamole-json`` mode, through the workbench runtime.

The block hands the iframe Apache Guacamole's URL with a login for the JSON auth
extension in its fragment. The token is opened here as the extension opens it
(tests/unit/test_guacamole_json.py, independent of our encoder): decrypted,
verified, refused once expired or used. The lab row is made READY directly.
Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import copy
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock import compat, messages
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab
from tests.unit.test_guacamole_json import SECRET, accepted

pytestmark = pytest.mark.django_db(transaction=True)

GUACAMOLE = "https://guac.example.org/guacamole/"
TTL = 20  # not the default (60): the token's life follows the setting
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
               "-----END OPENSSH PRIVATE KEY-----\n")
PASSWORD = "lab-password-7d1f"


def json_mode_settings(**changes: object) -> dict:
    value = copy.deepcopy(settings.XBLOCK_SETTINGS)
    value["labxblock"].update(terminal_mode="guacamole-json", guacamole_url=GUACAMOLE,
                              guacamole_json_secret_key=SECRET, ticket_ttl_seconds=TTL, **changes)
    return value


def call(runtime: WorkbenchRuntime, block: object, handler: str) -> dict:
    request = Request.blank("/", method="POST", body=b"{}")
    return json.loads(runtime.handle(block, handler, request).body)


@pytest.fixture
def json_block():
    """A read-only SSH block in guacamole-json mode, its learner's lab ready on a non-22 port.

    The lab is on loopback, which the test settings allow (``allowed_networks``).
    """
    with override_settings(XBLOCK_SETTINGS=json_mode_settings()):
        runtime = WorkbenchRuntime("ada")
        block = runtime.get_block(runtime.parse_xml_string(
            '<labxblock display_name="Desktop" read_only="true"><template>/static/lab.yaml</template>'
            "</labxblock>"))
        assert call(runtime, block, "terminal") == {"error": messages.NOT_READY}  # no lab yet
        user = get_user_model().objects.get(username=f"{compat.WORKBENCH_USER_PREFIX}ada")
        lab = Lab.objects.create(
            learner=user, course_run=compat.course_run(block), lab_key=block._lab_key(), provider="default",
            state=State.READY.value, desired=Desired.UP.value, ip="127.0.0.10", port=2222,
            stack_user="training", private_key=PRIVATE_KEY, password=PASSWORD, outputs={"host_key": HOST_KEY},
        )
        yield runtime, block, lab


def test_the_iframe_gets_guacamoles_url_with_a_login_only_in_its_fragment(json_block) -> None:
    runtime, block, lab = json_block
    before = time.time()
    answer = call(runtime, block, "terminal")
    url = urlsplit(answer["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == GUACAMOLE
    assert url.query == ""  # no token where a server, a proxy's access log or a Referer sees it
    assert url.fragment.startswith("/?data=")
    token = parse_qs(url.fragment.removeprefix("/?"))["data"][0]

    seen: set[bytes] = set()
    body = accepted(token, now=time.time(), seen=seen)
    assert body is not None
    assert body["username"] == f"learner-{lab.learner_id}" and body["singleUse"] is True
    assert before + TTL <= body["expires"] / 1000 <= time.time() + TTL
    assert body["connections"] == {lab.stack_name: {"protocol": "ssh", "parameters": {
        "hostname": "127.0.0.10", "port": "2222", "username": "training", "password": PASSWORD,
        "private-key": PRIVATE_KEY, "host-key": f"[127.0.0.10]:2222 {HOST_KEY}", "read-only": "true",
    }}}
    assert accepted(token, now=time.time(), seen=seen) is None  # single use
    assert accepted(token, now=body["expires"] / 1000 + 1, seen=set()) is None  # and it expires

    shown = json.dumps(answer)
    assert PASSWORD not in shown and "b3BlbnNzaC1rZXktdjEAAAAA" not in shown
    again = parse_qs(urlsplit(call(runtime, block, "terminal")["url"]).fragment.removeprefix("/?"))["data"][0]
    assert again != token and accepted(again, now=time.time(), seen=seen) is not None  # a fresh one each time


def test_a_host_key_output_that_is_not_a_key_shows_no_terminal(json_block) -> None:
    runtime, block, lab = json_block
    Lab.objects.filter(pk=lab.pk).update(outputs={"host_key": "not a key"})
    assert call(runtime, block, "terminal") == {"error": messages.TERMINAL_UNAVAILABLE}


def test_a_lab_address_the_site_refuses_gets_no_login(json_block, caplog) -> None:
    """The address is checked before any secret is read, in this mode as in the gateway's."""
    runtime, block, lab = json_block
    Lab.objects.filter(pk=lab.pk).update(ip="169.254.169.254")  # the cloud's metadata service
    assert call(runtime, block, "terminal") == {"error": messages.ADDRESS_REFUSED}
    assert "lab address 169.254.169.254 is not allowed" in caplog.text
    assert PASSWORD not in caplog.text and "b3BlbnNzaC1rZXktdjEAAAAA" not in caplog.text


def login_parameters(answer: dict) -> dict:
    """guacd's parameters in the login the iframe URL carries, opened as the extension opens it."""
    token = parse_qs(urlsplit(answer["url"]).fragment.removeprefix("/?"))["data"][0]
    body = accepted(token, now=time.time(), seen=set())
    ((connection,),) = [body["connections"].values()]
    return connection["parameters"]


FINGERPRINT = "sha256:" + ":".join(["ab"] * 32)


def test_an_rdp_lab_opens_with_a_new_labs_certificate_negotiated_security_and_resizing() -> None:
    with override_settings(XBLOCK_SETTINGS=json_mode_settings()):
        runtime = WorkbenchRuntime("ada")
        block = runtime.get_block(runtime.parse_xml_string(
            '<labxblock protocol="rdp"><template>/static/lab.yaml</template></labxblock>'))
        call(runtime, block, "terminal")  # the workbench gives the block its course run on a first call
        user = get_user_model().objects.get(username=f"{compat.WORKBENCH_USER_PREFIX}ada")
        lab = Lab.objects.create(
            learner=user, course_run=compat.course_run(block), lab_key=block._lab_key(), provider="default",
            state=State.READY.value, desired=Desired.UP.value, ip="127.0.0.10", protocol="rdp",
            stack_user="Administrator", password=PASSWORD)
        parameters = login_parameters(call(runtime, block, "terminal"))
        assert parameters == {"hostname": "127.0.0.10", "port": "3389", "username": "Administrator",
                              "password": PASSWORD, "security": "any", "ignore-cert": "true",
                              "resize-method": "display-update"}
        # The template pins its certificate: only that one is accepted.
        Lab.objects.filter(pk=lab.pk).update(outputs={"rdp_cert_fingerprints": FINGERPRINT})
        parameters = login_parameters(call(runtime, block, "terminal"))
        assert (parameters["ignore-cert"], parameters["cert-fingerprints"]) == ("false", FINGERPRINT)
        assert parameters["security"] == "any" and parameters["resize-method"] == "display-update"
