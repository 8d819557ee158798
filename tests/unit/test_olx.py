"""OLX import and export: every field survives a round trip; malformed OLX names element and problem."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lxml import etree
from xblock.test.toy_runtime import ToyRuntime

from labxblock import olx
from labxblock.fields import LIST_FIELDS, SCALAR_FIELDS

SAMPLE = Path(__file__).parents[1] / "data/olx/lab.xml"
FIELDS = (*SCALAR_FIELDS, *LIST_FIELDS, "instructions")


def load(xml: str | bytes):
    runtime = ToyRuntime()
    return runtime, runtime.get_block(runtime.parse_xml_string(xml))


def export(runtime, block) -> bytes:
    out = io.BytesIO()
    runtime.export_to_xml(block, out)
    return out.getvalue()


def field_values(block) -> dict:
    return {name: getattr(block, name) for name in FIELDS}


def test_sample_imports_every_field() -> None:
    _, block = load(SAMPLE.read_bytes())
    assert block.display_name == "Linux & networks"
    assert block.weight == 2.5
    assert (block.template, block.environment) == ("/static/lab.yaml", "/static/env.yaml")
    assert (block.stack_user, block.protocol) == ("student", "vnc")
    assert (block.key_type, block.lab_group) == ("rsa", "week-1")
    assert (block.launch_timeout, block.suspend_timeout, block.delete_timeout) == (900, 600, 86400)
    assert (block.read_only, block.hidden, block.fullscreen) == (True, False, False)
    assert (block.rdp_security, block.rdp_ignore_cert) == ("tls", False)
    assert (block.check_label, block.check_feedback) == ("Am I done?", "score")
    assert block.instructions == "<p>Configure <em>nginx</em> &amp; reload it.</p>"
    assert block.providers[0] == {"name": "default", "capacity": 20}
    assert block.providers[1]["name"] == "os2" and block.providers[1]["capacity"] == 0
    assert block.providers[1]["template"].startswith("heat_template_version: 2021-04-16\nparameters:\n")
    assert block.providers[1]["environment"] == "/static/env2.yaml"
    assert block.ports == [{"name": "ssh", "number": 22}, {"name": "web <admin>", "number": 8080}]
    assert block.checks[0]["script"] == (
        "#!/bin/bash\n"
        "# Spaces, quotes and markup survive:   <b>not html</b> & \"quoted\" 'single'\n"
        "systemctl is-active nginx && curl -fs http://localhost/ | grep -q '<title>'\n  "
    )
    assert block.checks[1] == {"name": "cdata end", "script": "echo ']]>' && test 1 -lt 2"}
    assert block.time_budget_hours == 20.5
    assert block.hooks == [
        {"kind": "before_suspend", "name": "stop nginx", "script": "sudo systemctl stop nginx",
         "timeout": 20},
        {"kind": "setup", "name": "", "script": "#!/bin/sh\ndate > ~/set-up-at"},
    ]
    assert len(block.children) == 1  # the nested HTML block


def test_export_then_import_gives_identical_fields() -> None:
    runtime, block = load(SAMPLE.read_bytes())
    exported = export(runtime, block)
    runtime2, again = load(exported)
    assert field_values(again) == field_values(block)
    assert len(again.children) == 1
    # And it is stable: exporting the re-imported block gives the same document.
    assert export(runtime2, again) == exported


def test_scripts_and_inline_templates_are_kept_in_cdata() -> None:
    runtime, block = load(SAMPLE.read_bytes())
    text = export(runtime, block).decode()
    assert "<![CDATA[#!/bin/bash\n" in text
    assert "<template><![CDATA[heat_template_version" in text
    assert 'template="/static/lab.yaml"' in text  # a file name stays an attribute


def test_inline_block_template_round_trips() -> None:
    inline = "heat_template_version: 2021-04-16\nparameters:\n  run: {type: string}\n"
    runtime, block = load(f"<labxblock><template><![CDATA[{inline}]]></template></labxblock>")
    assert block.template == inline
    _, again = load(export(runtime, block))
    assert again.template == inline


CHECKS_XML = """<labxblock>
  <check name="plain"><![CDATA[test -f ~/done]]></check>
  <check name="web" weight="2.5" timeout="20" host="admin@web:2222"
         hint="Start it: &quot;systemctl start nginx&quot; &lt;then&gt; reload.&#10;Then check again."
    ><![CDATA[#!/bin/sh
curl -fs http://web/]]></check>
</labxblock>"""


def test_check_settings_import_and_round_trip() -> None:
    runtime, block = load(CHECKS_XML)
    assert block.checks == [
        {"name": "plain", "script": "test -f ~/done"},  # only what the author gave
        {"name": "web", "script": "#!/bin/sh\ncurl -fs http://web/", "weight": 2.5, "timeout": 20,
         "host": "admin@web:2222",
         "hint": 'Start it: "systemctl start nginx" <then> reload.\nThen check again.'},
    ]
    exported = export(runtime, block)
    runtime2, again = load(exported)
    assert again.checks == block.checks
    assert export(runtime2, again) == exported
    checks = etree.fromstring(exported).findall("check")
    assert dict(checks[0].attrib) == {"name": "plain"}  # an old block's checks export as before
    assert checks[1].get("weight") == "2.5" and checks[1].get("timeout") == "20"


def test_checks_set_in_studio_export_their_settings() -> None:
    runtime, block = load("<labxblock/>")
    block.checks = [{"name": "n", "script": "true", "weight": 3, "hint": "", "host": "db", "timeout": 45}]
    _, again = load(export(runtime, block))
    assert again.checks == [{"name": "n", "script": "true", "weight": 3.0, "hint": "", "host": "db",
                             "timeout": 45}]


def test_lifecycle_scripts_and_the_time_budget_export_as_the_author_set_them() -> None:
    runtime, block = load('<labxblock time_budget_hours="none"/>')
    assert block.time_budget_hours is None  # empty: the site's budget
    block.hooks = [{"kind": "after_resume", "name": "clock", "script": "sudo chronyc makestep", "timeout": 15,
                    "host": ""}]
    block.time_budget_hours = 1.5
    exported = export(runtime, block)
    root = etree.fromstring(exported)
    assert root.get("time_budget_hours") == "1.5"
    assert [dict(h.attrib) for h in root.findall("hook")] == [
        {"name": "clock", "kind": "after_resume", "host": "", "timeout": "15"}]
    _, again = load(exported)
    assert (again.hooks, again.time_budget_hours) == (block.hooks, 1.5)


def test_defaults_are_not_exported() -> None:
    runtime, block = load("<labxblock/>")
    root = etree.fromstring(export(runtime, block))
    assert dict(root.attrib) == {"xblock-family": "xblock.v1"}
    assert len(root) == 0


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ('<labxblock weight="heavy"/>', "<labxblock> (line 1): weight='heavy' is not a number"),
        ('<labxblock launch_timeout="soon"/>',
         "<labxblock> (line 1): launch_timeout='soon' is not a whole number"),
        ('<labxblock read_only="yes"/>', "<labxblock> (line 1): read_only='yes' must be true or false"),
        ('<labxblock colour="red"/>', "<labxblock> (line 1): unknown attribute 'colour'"),
        ('<labxblock>\n<port name="ssh" number="ssh"/></labxblock>',
         "<port> (line 2): number='ssh' is not a whole number"),
        ('<labxblock>\n<port name="x" number="70000"/></labxblock>',
         "<port> (line 2): number='70000' must be between 1 and 65535"),
        ('<labxblock>\n<port name="x"/></labxblock>', "<port> (line 2): the number attribute is missing"),
        ('<labxblock>\n<provider capacity="3"/></labxblock>',
         "<provider> (line 2): the name attribute is missing"),
        ('<labxblock>\n<provider name="a" capacity="-1"/></labxblock>',
         "<provider> (line 2): capacity='-1' must be at least 0"),
        ('<labxblock>\n<provider name="a"><flavor/></provider></labxblock>',
         "<flavor> (line 2): unexpected element inside <provider>"),
        ('<labxblock>\n<check name="a"><b>x</b></check></labxblock>',
         "<b> (line 2): a check holds its script as text (CDATA), not elements"),
        ('<labxblock>\n<check name="a" weight="much">true</check></labxblock>',
         "<check> (line 2): weight='much' is not a number"),
        ('<labxblock>\n<check name="a" timeout="0">true</check></labxblock>',
         "<check> (line 2): timeout='0' must be at least 1"),
        ('<labxblock>\n<check name="a" retries="3">true</check></labxblock>',
         "<check> (line 2): unknown attribute 'retries' (allowed: hint, host, name, timeout, weight)"),
        ('<labxblock>\n<hook name="a">true</hook></labxblock>',
         "<hook> (line 2): the kind attribute is missing (setup, after_resume or before_suspend)"),
        ('<labxblock>\n<hook kind="setup" weight="2">true</hook></labxblock>',
         "<hook> (line 2): unknown attribute 'weight' (allowed: host, kind, name, timeout)"),
        ('<labxblock>\n<hook kind="setup"><b>x</b></hook></labxblock>',
         "<b> (line 2): a lifecycle script holds its script as text (CDATA), not elements"),
        ('<labxblock time_budget_hours="lots"/>',
         "<labxblock> (line 1): time_budget_hours='lots' is not a number"),
        ('<labxblock template="/static/a.yaml">\n<template>a:\n 1</template></labxblock>',
         "<template> (line 2): template is given twice"),
    ],
)
def test_malformed_olx_names_element_and_problem(xml: str, expected: str) -> None:
    with pytest.raises(olx.OlxError) as caught:
        load(xml)
    assert str(caught.value) == expected
