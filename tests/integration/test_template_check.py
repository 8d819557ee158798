"""Templates checked by the cloud, as Studio shows them: real Heat, the local provider, the fake, no cloud.

The block is driven through the workbench runtime in author mode (what Studio's
preview runtime says); ``validate()`` is what Studio shows on the component after a
save, and the author view lists the same warnings. Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from lxml import html

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime
from xblock.validation import ValidationMessage

from labxblock import clouds, template_check
from labxblock.demo.scenario import TEMPLATE as LOCAL_TEMPLATE
from labxblock.providers.base import Provider, TemplateProblem, TemporaryError
from labxblock.providers.local import LocalProvider
from tests.engine_harness import active_lab_settings, lab_settings
from tests.services.process import free_port

pytestmark = pytest.mark.django_db
_scenario = itertools.count()

# Complete for the contract (run, public_ip, private_key, host_key): only the cloud has a say.
HEAT_GOOD = """heat_template_version: 2018-08-31
parameters:
  run: {type: string}
resources:
  key:
    type: OS::Heat::RandomString
outputs:
  public_ip:
    value: 192.0.2.10
  private_key:
    value: {get_attr: [key, value]}
  host_key:
    value: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
"""
LOCAL_GOOD = LOCAL_TEMPLATE  # the demo's: complete for the contract


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    cache.clear()  # verdicts are cached by template: each test asks its own cloud
    yield
    cache.clear()


@pytest.fixture
def site():
    """Use the given providers as the site's (``site(providers)``) for the rest of the test."""
    contexts = []

    def use(providers: dict[str, dict[str, Any]]) -> None:
        ctx = active_lab_settings(lab_settings(providers))
        ctx.__enter__()
        contexts.append(ctx)

    yield use
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)


def studio_block(template: str) -> Any:
    runtime = WorkbenchRuntime("author")
    runtime.is_author_mode = True  # what Studio's preview runtime says
    runtime.id_generator.set_scenario(f"checked-{next(_scenario)}")
    xml = f'<labxblock display_name="Checked lab"><template><![CDATA[{template}]]></template></labxblock>'
    return runtime.get_block(runtime.parse_xml_string(xml))


def warnings(block: Any) -> list[str]:
    """What Studio shows on the component; every one a warning, so saving is never blocked."""
    messages = block.validate().to_json()["messages"]
    assert {m["type"] for m in messages} <= {ValidationMessage.WARNING}, messages
    return [m["text"] for m in messages]


def shown(block: Any) -> list[str]:
    """The warnings as the author view lists them."""
    page = html.fromstring(block.runtime.render(block, "author_view").content)
    return [li.text_content() for li in page.cssselect(".labxblock-problems li")]


def answered(block: Any, timeout: float = 30) -> list[str]:
    """``warnings`` once the cloud has answered. Heat's first answer (a token first, on a loaded
    machine) may come after a request's budget: it is kept and shown at a later render."""
    deadline = time.monotonic() + timeout
    found = warnings(block)
    while any("could not be checked" in w for w in found) and time.monotonic() < deadline:
        time.sleep(0.5)
        found = warnings(block)
    return found


# --- real Heat ------------------------------------------------------------------------------

HEAT_CASES = [
    pytest.param(
        HEAT_GOOD.replace("  key:\n", "  key:\n\ttype: OS::Heat::None\n"),
        "Provider default refuses the template (inline), line 6: Error parsing template [root stack] while "
        "scanning for the next token; found character '\\t' that cannot start any token",
        id="yaml"),
    pytest.param(
        HEAT_GOOD.replace("OS::Heat::RandomString", "OS::Nova::Nonsense"),
        "Provider default refuses the template (inline), line 6: The Resource Type (OS::Nova::Nonsense) "
        "could not be found.",
        id="unknown-type"),
    pytest.param(
        HEAT_GOOD.replace("[key, value]", "[key, address]"),
        "Provider default refuses the template (inline), line 11: outputs.private_key.value.get_attr: "
        "The Referenced Attribute (key address) is incorrect.",
        id="bad-get-attr"),
    pytest.param(
        HEAT_GOOD.replace("  run: {type: string}\n", "  run: {type: string}\n  flavor: {type: string}\n"),
        "Provider default refuses the template (inline), line 4: The Parameter (flavor) was not provided: "
        "it has no default, and a lab gives only run",
        id="missing-parameter"),
]


@pytest.mark.heat
@pytest.mark.slow
@pytest.mark.parametrize(("template", "message"), HEAT_CASES)
def test_heat_refuses_with_its_message_and_the_line_it_names(openstack_rig, site, template, message) -> None:
    site({"default": {"type": "openstack", **openstack_rig.provider_config()}})
    block = studio_block(template)
    assert answered(block) == [message]  # the YAML error: Heat's message replaces authoring's own
    assert shown(block) == [message]


@pytest.mark.heat
@pytest.mark.slow
def test_a_template_heat_accepts_gets_no_warning_and_missing_contract_parts_still_do(openstack_rig,
                                                                                     site) -> None:
    site({"default": {"type": "openstack", **openstack_rig.provider_config()}})
    assert answered(studio_block(HEAT_GOOD)) == []
    bare = HEAT_GOOD.replace("  run: {type: string}\n", "  other: {type: string, default: x}\n")
    bare = bare.split("outputs:")[0] + "outputs:\n  ip:\n    value: 192.0.2.10\n"
    assert answered(studio_block(bare)) == [
        'The template (inline) has no "run" parameter.',
        "The template (inline) lacks the outputs: public_ip, private_key.",
        "The template (inline) has no host_key output: the lab's SSH host key is then trusted the first "
        "time the lab answers. Output it so that it is verified from the start.",
    ]


@pytest.mark.heat
@pytest.mark.slow
def test_the_openstack_provider_reports_heats_problems_with_lines(openstack_rig) -> None:
    from labxblock.providers.openstack import OpenStackProvider

    provider = OpenStackProvider("rig", openstack_rig.provider_config())
    assert provider.validate(HEAT_GOOD, None, ("run",)) == []
    broken = HEAT_GOOD.replace("    type: OS::Heat::RandomString\n",
                               "    type: OS::Heat::RandomString\n    properties: {lenth: 3}\n")
    assert provider.validate(broken, "parameters: {}", ("run",)) == [
        TemplateProblem("Property error: resources.key.properties: Unknown Property lenth", 7)]
    assert provider.validate(HEAT_GOOD, "- not a mapping", ("run",)) == [
        TemplateProblem("the stack environment must be a YAML mapping")]


# --- the local provider ---------------------------------------------------------------------


def test_the_local_provider_checks_its_own_format(site, tmp_path) -> None:
    site({"default": {"type": "local", "root": str(tmp_path), "allowed_networks": ["127.0.0.0/8"]}})
    assert warnings(studio_block(LOCAL_GOOD)) == []
    assert warnings(studio_block(LOCAL_GOOD.replace("LabXBlock::Local::SSH", "OS::Nova::Server"))) == [
        "Provider default refuses the template (inline), line 7: resource lab: type 'OS::Nova::Server' is "
        "not one the local provider runs (LabXBlock::Local::SSH, OS::Heat::RandomString, OS::Heat::Value)",
        # the output's get_attr is not reached: the first refusal is what create would say
    ]
    assert not list(tmp_path.iterdir())  # nothing was started


# --- caching, and a cloud that does not answer ----------------------------------------------


def test_studio_rendering_again_does_not_ask_the_cloud_again(site, cloud_fake) -> None:
    site({"default": {"type": "openstack", **cloud_fake.provider_config}})
    block = studio_block(HEAT_GOOD)
    for _ in range(3):
        assert warnings(block) == [] and shown(block) == []
    assert cloud_fake.counters()["stack_validate"] == 1
    block.template = HEAT_GOOD.replace("192.0.2.10", "192.0.2.11")  # the author saves a change
    assert warnings(block) == []
    assert cloud_fake.counters()["stack_validate"] == 2


def test_a_refusal_from_the_fake_is_heats_own_wording(site, cloud_fake) -> None:
    site({"default": {"type": "openstack", **cloud_fake.provider_config}})
    assert warnings(studio_block(HEAT_GOOD.replace("heat_template_version: 2018-08-31\n", ""))) == [
        "Provider default refuses the template (inline): Template format version not found."]


NOT_CHECKED = ("The template (inline) could not be checked by provider {}: the cloud did not answer in time. "
               "This does not stop you saving; it is checked again in a few minutes.")


def test_an_unreachable_cloud_is_a_warning_never_a_blocked_save(site, cloud_fake) -> None:
    site({"default": {"type": "openstack", **cloud_fake.provider_config,
                      "auth_url": f"http://127.0.0.1:{free_port()}/v3"}})  # nothing listens there
    block = studio_block(HEAT_GOOD)
    assert warnings(block) == [NOT_CHECKED.format("default")]
    assert shown(block) == [NOT_CHECKED.format("default")]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections are never accepted: its backlog is full, so new ones hang (SYN dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    for _ in range(3):  # fill the backlog; later connection attempts wait for the connect timeout
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        queued.append(client)
    time.sleep(0.2)
    yield port
    for client in queued:
        client.close()
    server.close()


def test_a_cloud_that_never_answers_costs_studio_the_short_connect_timeout_once(site, cloud_fake,
                                                                                silent_port) -> None:
    site({"default": {"type": "openstack", **cloud_fake.provider_config, "connect_timeout": 20,
                      "auth_url": f"http://127.0.0.1:{silent_port}/v3"}})
    block = studio_block(HEAT_GOOD)
    started = time.monotonic()
    assert warnings(block) == [NOT_CHECKED.format("default")]
    took = time.monotonic() - started
    assert 2.5 < took < 10, took  # the 3 s connect timeout of this path, not the provider's 20 s
    started = time.monotonic()
    assert shown(block) == [NOT_CHECKED.format("default")]  # asked again minutes later: a quick render
    assert time.monotonic() - started < 1


def test_a_stalled_cloud_costs_a_studio_render_the_budget_once_for_all_templates(site, cloud_fake) -> None:
    """Heat takes every question and answers none in time: one render waits the budget for all of them."""
    cloud_fake.configure(timeout_rate=1.0, timeout_seconds=15, fault_kinds=["stack_validate"])
    names = ("default", "backup", "spare")
    site({name: {"type": "openstack", **cloud_fake.provider_config} for name in names})
    runtime = WorkbenchRuntime("author")
    runtime.is_author_mode = True
    runtime.id_generator.set_scenario(f"checked-{next(_scenario)}")
    providers = "".join(f'<provider name="{name}"/>' for name in names)
    block = runtime.get_block(runtime.parse_xml_string(
        f'<labxblock><template><![CDATA[{HEAT_GOOD}]]></template>{providers}</labxblock>'))
    started = time.monotonic()
    assert shown(block) == [NOT_CHECKED.format(name) for name in names]
    took = time.monotonic() - started
    assert took < template_check.CHECK_BUDGET_SECONDS + 2.5, took  # not 3 x the 10 s read timeout
    assert cloud_fake.counters()["stack_validate"] == 3  # all three were asked, at once
    started = time.monotonic()
    assert shown(block) == [NOT_CHECKED.format(name) for name in names]  # still a warning, not asked again
    assert time.monotonic() - started < 1 and cloud_fake.counters()["stack_validate"] == 3


@pytest.mark.slow
def test_the_validation_client_gives_up_on_an_answer_after_its_short_read_timeout(cloud_fake) -> None:
    from labxblock.providers.openstack import OpenStackProvider
    from labxblock.providers.openstack_validate import READ_TIMEOUT_SECONDS

    cloud_fake.configure(timeout_rate=1.0, timeout_seconds=15, fault_kinds=["stack_validate"])
    provider = OpenStackProvider("stalled", {**cloud_fake.provider_config, "read_timeout": 14})
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="template validate: no answer in time"):
        provider.validate(HEAT_GOOD, None, ("run",))
    assert READ_TIMEOUT_SECONDS <= time.monotonic() - started < READ_TIMEOUT_SECONDS + 5


class OlderProvider(LocalProvider):
    """A third party's provider written before ``validate`` existed: the base class's default."""

    validate = Provider.validate


@pytest.fixture
def older_provider_installed(tmp_path, monkeypatch) -> str:
    """``OlderProvider`` installed as a distribution whose entry point names it, as pip would."""
    dist = tmp_path / "site" / "older_provider-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: older-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[labxblock.providers]\nolder = {__name__}:OlderProvider\n")
    monkeypatch.syspath_prepend(str(dist.parent))
    return "older"


def test_a_provider_that_cannot_validate_adds_no_warning(site, older_provider_installed, tmp_path) -> None:
    site({"default": {"type": older_provider_installed, "root": str(tmp_path)}})
    assert type(clouds.provider("default")) is OlderProvider
    assert warnings(studio_block(LOCAL_GOOD.replace("LabXBlock::Local::SSH", "OS::Nova::Server"))) == []
