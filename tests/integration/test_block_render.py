"""LabBlock's views through the xblock-sdk workbench runtime: they render, escape, and are accessible.

Needs the workbench app: run with ``--ds tests.workbench_settings`` (or a settings module that
installs ``workbench``); under plain ``tests.settings`` this module is skipped at collection.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest
from django.conf import settings
from lxml import html

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

pytestmark = pytest.mark.django_db
EVIL = '<script>alert("x")</script>'
_counter = itertools.count()

SSH_XML = """<labxblock display_name="SSH lab" check_label="Done?">
  <instructions><![CDATA[<p>Do <b>this</b>.</p>]]></instructions>
  <template><![CDATA[heat_template_version: 2021-04-16
parameters:
  run: {type: string}
outputs:
  public_ip: {value: 192.0.2.1}
  private_key: {value: k}
]]></template>
  <port name="ssh" number="22"/><port name="web" number="8080"/>
  <check name="done"><![CDATA[test -f ~/done]]></check>
</labxblock>"""


def make_block(xml: str, student: str = "student_1"):
    runtime = WorkbenchRuntime(student)
    runtime.id_generator.set_scenario(f"render-{next(_counter)}")
    return runtime, runtime.get_block(runtime.parse_xml_string(xml))


def render(xml: str, view: str = "student_view") -> str:
    runtime, block = make_block(xml)
    return runtime.render(block, view).content


def evil_block():
    """A block in which every author-set text carries a script."""
    runtime, block = make_block("<labxblock/>")
    for name in ("display_name", "stack_user", "lab_group", "check_label", "environment"):
        setattr(block, name, EVIL)
    block.template = f"/static/{EVIL}.yaml"
    block.instructions = f'<p>ok</p>{EVIL}<img src="x" onerror="alert(1)">'
    block.providers = [{"name": EVIL, "template": EVIL}]
    block.ports = [{"name": EVIL, "number": 22}]
    block.checks = [{"name": EVIL, "script": EVIL}]
    block.save()
    return runtime, block


def render_evil(view: str = "student_view") -> str:
    runtime, block = evil_block()
    return runtime.render(block, view).content


def test_student_view_shows_instructions_status_terminal_and_controls() -> None:
    page = html.fromstring(render(SSH_XML))
    assert page.cssselect(".labxblock-instructions b")[0].text == "this"
    status = page.cssselect("[data-role=phase]")[0].getparent()
    assert status.get("aria-live") == "polite" and status.get("role") == "status"
    assert page.cssselect("iframe[data-role=terminal]")
    assert [o.get("value") for o in page.cssselect("select[data-action=port] option")] == ["22", "8080"]
    assert page.cssselect("[data-action=check]")[0].text_content() == "Done?"
    assert page.cssselect("[data-action=reset]") and page.cssselect("[data-action=fullscreen]")
    assert page.cssselect("[data-role=idle]")[0].get("role") == "alertdialog"


def test_no_port_selector_without_ports_and_no_fullscreen_when_not_allowed() -> None:
    xml = SSH_XML.replace('<port name="ssh" number="22"/><port name="web" number="8080"/>', "").replace(
        'check_label="Done?"', 'fullscreen="false"')
    page = html.fromstring(render(xml))
    assert not page.cssselect("[data-action=port]")
    assert not page.cssselect("[data-action=fullscreen]")


def test_hidden_lab_renders_no_terminal_but_still_launches() -> None:
    content = render(SSH_XML.replace("<labxblock ", '<labxblock hidden="true" '))
    page = html.fromstring(content)
    assert page.cssselect(".labxblock")[0].get("data-hidden") == "true"
    assert not page.cssselect("iframe")


def test_init_args_carry_translated_strings_and_timings_but_no_secrets() -> None:
    _, block = make_block(SSH_XML)
    frag = block.student_view({})  # unwrapped: the runtime's wrapper moves the args into the page
    args = frag.json_init_args
    assert args["i18n"]["Are you still there?"] == "Are you still there?"
    assert args["keepalive_seconds"] == 30 and args["idle_seconds"] >= 30
    dumped = json.dumps(args) + frag.content
    for secret in settings.TEST_TICKET_KEYS + settings.TEST_SECRET_KEYS:
        assert secret not in dumped


def test_every_control_has_a_label() -> None:
    page = html.fromstring(render(SSH_XML))
    labelled_ids = {label.get("for") for label in page.cssselect("label")}
    for control in page.cssselect("button, select, input, a, iframe, textarea"):
        name = (control.text_content().strip() or control.get("aria-label") or control.get("title")
                or control.get("id") in labelled_ids)
        assert name, html.tostring(control)


@pytest.mark.parametrize("view", ["student_view", "author_view", "studio_view"])
def test_script_in_every_author_field_comes_out_escaped(view: str) -> None:
    content = render_evil(view)
    assert "<script>alert" not in content
    assert "onerror=" not in content.replace("onerror=&quot;", "")  # only ever as escaped text
    if view != "studio_view":
        assert "&lt;script&gt;alert" in content  # shown, as text


def test_student_view_keeps_safe_instruction_markup_and_drops_scripts() -> None:
    page = html.fromstring(render_evil())
    instructions = page.cssselect(".labxblock-instructions")[0]
    assert instructions.cssselect("p")[0].text == "ok"
    assert not instructions.cssselect("script")
    assert all(img.get("onerror") is None for img in instructions.cssselect("img"))
    # Author texts shown to the learner are text, not markup.
    assert page.cssselect(".labxblock-title")[0].text == EVIL
    assert page.cssselect("select option")[0].text.startswith(EVIL)


def test_author_view_lists_problems_in_words_escaped() -> None:
    page = html.fromstring(render_evil("author_view"))
    problems = [li.text_content() for li in page.cssselect(".labxblock-problems li")]
    assert any(f"Unknown provider {EVIL}" in p for p in problems)
    assert not page.cssselect(".labxblock-problems script")


def test_validate_warns_through_the_runtime() -> None:
    _, block = make_block("<labxblock/>")
    messages = block.validate().to_json()["messages"]
    assert [m["type"] for m in messages] == ["warning"]
    assert "No template" in messages[0]["text"]


def test_studio_view_edits_every_authored_field() -> None:
    content = render(SSH_XML, "studio_view")
    names = set(re.findall(r'data-field-name="([a-z_]+)"', content))
    assert {"template", "providers", "ports", "checks", "instructions", "lab_group", "hidden"} <= names
