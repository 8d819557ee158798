"""LabBlock in Studio, through the workbench runtime: author mode touches no lab; nested instructions.

Studio's preview runtime marks itself with ``is_author_mode = True`` (edx-platform's
contentstore preview) and dispatches handlers with the author as the user. Run with
``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import io
import itertools
import json

import pytest
from django.conf import settings
from lxml import html
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock.models import CheckRun, Lab

pytestmark = pytest.mark.django_db
_scenario = itertools.count()
XML = """<labxblock display_name="Studio lab">
  <template><![CDATA[heat_template_version: 2021-04-16
parameters:
  run: {type: string}
]]></template>
  <port name="ssh" number="22"/>
  <check name="done"><![CDATA[test -f ~/done]]></check>
  <html_demo><p class="first">Step one: log in.</p></html_demo>
  <html_demo><p class="second">Step two: start nginx.</p></html_demo>
</labxblock>"""
HANDLERS = {
    "status": {"launch": True}, "reset": {}, "retry": {}, "keepalive": {}, "choose_port": {"port": 22},
    "terminal": {}, "check": {}, "check_result": {},
}
IN_THE_LMS = "Labs run in the LMS, not in Studio. View this unit in the LMS to try the lab."


def make(xml: str | bytes = XML, *, author_mode: bool = False):
    runtime = WorkbenchRuntime("author")
    runtime.id_generator.set_scenario(f"studio-{next(_scenario)}")
    if author_mode:
        runtime.is_author_mode = True  # what Studio's preview runtime says
    return runtime, runtime.get_block(runtime.parse_xml_string(xml))


def post(runtime, block, handler: str, data: dict) -> dict:
    request = Request.blank("/", method="POST", body=json.dumps(data).encode())
    return json.loads(runtime.handle(block, handler, request).body)


@pytest.mark.parametrize("handler", sorted(HANDLERS))
def test_in_author_mode_no_handler_touches_a_lab(handler, django_capture_on_commit_callbacks) -> None:
    runtime, block = make(author_mode=True)
    with django_capture_on_commit_callbacks() as sent:  # tasks go out only after commit
        answer = post(runtime, block, handler, HANDLERS[handler])
    assert answer == {"error": IN_THE_LMS}
    assert Lab.objects.count() == 0 and CheckRun.objects.count() == 0
    assert sent == []


def test_outside_author_mode_the_same_launch_makes_a_lab(django_capture_on_commit_callbacks) -> None:
    runtime, block = make()
    with django_capture_on_commit_callbacks() as sent:
        answer = post(runtime, block, "status", {"launch": True})
    assert "error" not in answer or answer["error"] is None
    assert Lab.objects.count() == 1 and len(sent) == 1  # the row, and the task sent after commit


def init_args(page) -> dict:
    """The arguments the runtime hands the block's script (its json/xblock-args element)."""
    return json.loads(page.cssselect("script.xblock_json_init_args")[0].text)


def children_of(page) -> list[str]:
    return [p.get("class") for p in page.cssselect(".labxblock-children p, .author-preview-view p")]


def test_the_labs_own_studio_page_shows_its_instructions_with_controls_to_add_html() -> None:
    runtime, block = make(author_mode=True)
    frag = runtime.render(block, "author_view", {"root_xblock": block})
    page = html.fromstring(frag.content)
    assert page.cssselect(".labxblock-author .labxblock-title")[0].text == "Studio lab"
    assert children_of(page) == ["first", "second"]
    shown = [c.get("data-usage-id") for c in page.cssselect(".labxblock-child")]
    assert shown == [str(c) for c in block.children]
    add = page.cssselect(".add-xblock-component a.add-xblock-component-button")
    assert [(a.get("data-category"), a.text_content().strip()) for a in add] == [
        ("html", "Instructions (HTML)")]
    # Studio's add/reorder script is started on the block by the author view's own (test lab) script.
    assert page.get("data-init") == "LabXBlockAuthor"
    assert init_args(page)["nested_init"] == "StudioContainerXBlockWithNestedXBlocksMixin"
    assert "StudioContainerXBlockWithNestedXBlocksMixin" in "".join(r.data for r in frag.resources)


def test_in_the_unit_the_instructions_are_previewed_without_controls() -> None:
    runtime, block = make(author_mode=True)
    _, unit = make("<labxblock/>")  # any other root: the unit page that holds the lab
    for context in (None, {"root_xblock": unit}):
        page = html.fromstring(runtime.render(block, "author_view", context).content)
        assert children_of(page) == ["first", "second"]
        assert not page.cssselect(".add-xblock-component") and init_args(page)["nested_init"] is None


def test_nested_instructions_survive_an_olx_round_trip_and_are_shown_again() -> None:
    runtime, block = make()
    out = io.BytesIO()
    runtime.export_to_xml(block, out)
    assert out.getvalue().decode().count("<html_demo") == 2
    runtime2, again = make(out.getvalue(), author_mode=True)
    page = html.fromstring(runtime2.render(again, "author_view", {"root_xblock": again}).content)
    assert children_of(page) == ["first", "second"]
