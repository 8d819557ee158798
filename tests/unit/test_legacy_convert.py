"""Old stackamole/hastexo OLX read as the old packages read it, and converted into labxblock's fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from labxblock import authoring
from labxblock import olx as own_olx
from labxblock.legacy import olx
from labxblock.legacy.convert import LEGACY_LAB_GROUP, convert
from labxblock.legacy.fields import FIELDS, STACK_COLUMNS
from labxblock.legacy.report import CHANGED, DROPPED, ERROR

DOC = (Path(__file__).parents[2] / "docs" / "legacy-fields.md").read_text()

# A unit's element as stackamole 9.5.0 exports it (every attribute), and the block's own file.
EXPORTED = """<stackamole url_name="abc123" filename="abc123" xblock-family="xblock.v1" display_name="Lab 1"
  progress_check_label="Submit answer" show_hints_on_error="False" show_feedback="True"
  progress_check_result_heading="Answer submitted" weight="2.5" stack_user_name="student" stack_protocol="rdp"
  stack_template_path="hot_lab.yaml" stack_key_type="ed25519" launch_timeout="900" suspend_timeout=""
  hook_script="hook.sh" delete_age="86400" read_only="True" hidden="False" enable_fullscreen="true"/>"""
OWN_FILE = b"""<stackamole>
  <!-- a comment -->
  <hook_events suspend="True" resume="False" delete="True"/>
  <port name="desktop" number="3389"/>
  <port name="ssh" number="22"/>
  <provider name="default" capacity="-1"/>
  <provider name="backup" capacity="5" template="hot_backup.yaml" environment="env.yaml"/>
  <provider name="off" capacity="0"/>
  <test><![CDATA[
    #!/bin/bash
    test -f ~/done
  ]]></test>
  <test><![CDATA[#!/usr/bin/env python3
print("ok")
]]></test>
</stackamole>"""


def element(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def files(mapping: dict[str, bytes]):
    return mapping.get


def kinds(notes, kind: str) -> dict[str, str]:
    return {n.field: n.text for n in notes if n.kind == kind}


def test_the_exported_form_reads_every_field_from_the_attributes_and_the_blocks_own_file() -> None:
    old = olx.read(element(EXPORTED), files({"stackamole/abc123.xml": OWN_FILE}))
    assert old.dialect == "stackamole" and old.source == "stackamole/abc123.xml" and not old.notes
    v = old.values
    assert v["display_name"] == "Lab 1" and v["weight"] == 2.5 and v["stack_user_name"] == "student"
    assert v["stack_protocol"] == "rdp" and v["stack_template_path"] == "hot_lab.yaml"
    assert v["launch_timeout"] == 900 and v["suspend_timeout"] is None and v["delete_age"] == "86400"
    assert v["read_only"] is True and v["hidden"] is False and v["show_hints_on_error"] is False
    assert v["hook_events"] == {"suspend": True, "resume": False, "delete": True}
    assert v["ports"] == [{"name": "desktop", "number": 3389}, {"name": "ssh", "number": 22}]
    assert v["providers"] == [
        {"name": "default", "capacity": -1},
        {"name": "backup", "capacity": 5, "template": "hot_backup.yaml", "environment": "env.yaml"},
        {"name": "off", "capacity": 0},
    ]
    # As the old block did: the opening newline goes, the script is dedented, nothing else changes.
    assert v["tests"] == ["#!/bin/bash\ntest -f ~/done\n", '#!/usr/bin/env python3\nprint("ok")\n']


def test_conversion_carries_what_has_an_equivalent_and_names_what_has_none() -> None:
    old = olx.read(element(EXPORTED), files({"stackamole/abc123.xml": OWN_FILE}))
    result = convert(old.values)
    assert result.values == {
        "lab_group": LEGACY_LAB_GROUP, "display_name": "Lab 1", "weight": 2.5, "read_only": True,
        "hidden": False, "stack_user": "student", "protocol": "rdp", "template": "hot_lab.yaml",
        "launch_timeout": 900, "delete_timeout": 86400, "key_type": "ed25519", "check_label": "Submit answer",
        "check_feedback": "score", "fullscreen": True,
        "ports": [{"name": "desktop", "number": 3389}, {"name": "ssh", "number": 22}],
        "providers": [
            {"name": "default"},
            {"name": "backup", "capacity": 5, "template": "hot_backup.yaml", "environment": "env.yaml"},
            {"name": "off", "capacity": 0},
        ],
        "checks": [{"name": "", "script": "#!/bin/bash\ntest -f ~/done\n", "timeout": 300},
                   {"name": "", "script": '#!/usr/bin/env python3\nprint("ok")\n', "timeout": 300}],
    }
    dropped = kinds(result.notes, DROPPED)
    assert set(dropped) == {"hook_script", "progress_check_result_heading"}
    assert "suspend, delete" in dropped["hook_script"]  # the events it ran on
    assert set(kinds(result.notes, CHANGED)) == {"stack_key_type", "tests"}
    assert not result.errors
    # The converted values are valid labxblock OLX and read back the same.
    node = etree.Element("labxblock")
    own_olx.export(result.values, node)
    assert own_olx.parse(etree.fromstring(etree.tostring(node)))[0] == result.values


def test_the_inline_form_and_option_elements_read_like_the_attributes() -> None:
    old = olx.read(element("""<hastexo xmlns:option="http://code.edx.org/xblock/option" url_name="x"
        stack_user_name="ubuntu" stack_template_path="k8s.yaml" launch_timeout="600">
      <option:ports>
        - name: dashboard
          number: 8443
      </option:ports>
      <option:tests>
        - |
          #!/bin/sh
          true
      </option:tests>
      <option:hook_events>{"suspend": true}</option:hook_events>
      <option:launch_timeout>60</option:launch_timeout>
      <provider name="p1"/>
      <html url_name="steps"/>
    </hastexo>"""))
    assert old.values["ports"] == [{"name": "dashboard", "number": 8443}]
    assert old.values["tests"] == ["#!/bin/sh\ntrue\n"] and old.values["hook_events"] == {"suspend": True}
    assert old.values["launch_timeout"] == 600  # the attribute wins over <option:…>, as before
    assert old.values["providers"] == [{"name": "p1", "capacity": -1}]
    assert [c.tag for c in old.children] == ["html"]  # hastexo's nested blocks stay blocks


def test_stackamole_ignores_child_blocks_and_says_so() -> None:
    old = olx.read(element('<stackamole stack_user_name="u"><html url_name="h"/><video/></stackamole>'))
    assert old.children == []
    assert set(kinds(old.notes, DROPPED)) == {"<html>", "<video>"}


@pytest.mark.parametrize(("xml", "field"), [
    ('<stackamole><port name="ssh"/></stackamole>', "ports"),
    ('<stackamole><port name="ssh" number="twenty"/></stackamole>', "ports"),
    ('<stackamole><provider capacity="3"/></stackamole>', "providers"),
    ('<stackamole><provider name="p" capacity="many"/></stackamole>', "providers"),
    ('<stackamole launch_timeout="soon"/>', "launch_timeout"),
    ('<stackamole weight="heavy"/>', "weight"),
    ('<hastexo xmlns:option="http://code.edx.org/xblock/option">'
     "<option:ports>{a: 1}</option:ports></hastexo>", "ports"),
    ('<stackamole url_name="gone" filename="gone"/>', "filename"),
])
def test_what_the_old_package_refused_is_an_error_naming_the_field(xml: str, field: str) -> None:
    old = olx.read(element(xml), files({}))
    assert [n.field for n in old.notes if n.kind == ERROR] == [field]


def test_the_blocks_own_file_is_also_found_under_hastexo_as_stackamole_looked_for_it() -> None:
    old = olx.read(element('<stackamole url_name="folder:lab" filename="lab"/>'),
                   files({"hastexo/folder/lab.xml": b'<hastexo><port name="s" number="22"/></hastexo>'}))
    assert old.source == "hastexo/folder/lab.xml" and old.values["ports"] == [{"name": "s", "number": 22}]


def test_unknown_attributes_are_reported_not_kept() -> None:
    old = olx.read(element('<stackamole colour="blue" display_name="x"/>'))
    assert kinds(old.notes, DROPPED) == {"colour": "not a field of the old block: ignored, as it was"}


@pytest.mark.parametrize(("legacy", "expected"), [
    ({"show_feedback": True, "show_hints_on_error": True}, "full"),
    ({"show_feedback": True, "show_hints_on_error": False}, "score"),
    ({"show_feedback": False, "show_hints_on_error": True}, "none"),
    ({"show_feedback": False}, "none"),
    ({"show_hints_on_error": False}, "score"),
])
def test_feedback_and_hints_become_one_setting(legacy: dict, expected: str) -> None:
    assert convert(legacy).values["check_feedback"] == expected


@pytest.mark.parametrize(("value", "inherit", "expected"), [
    ("true", False, True), ("false", True, False), ("inherit", False, False), ("inherit", True, True),
])
def test_fullscreen_inherit_follows_the_old_sites_setting(value: str, inherit: bool, expected: bool) -> None:
    assert convert({"enable_fullscreen": value}, inherit_fullscreen=inherit).values["fullscreen"] is expected


def test_the_deprecated_provider_is_used_only_without_provider_elements() -> None:
    alone = convert({"provider": "old-cloud"})
    assert alone.values["providers"] == [{"name": "old-cloud"}]
    both = convert({"provider": "old-cloud", "providers": [{"name": "new", "capacity": -1}]})
    assert both.values["providers"] == [{"name": "new"}] and "provider" in kinds(both.notes, DROPPED)


def test_defaults_need_no_notes_and_keep_labxblocks_own_defaults() -> None:
    result = convert({"progress_check_label": "Check Progress", "progress_check_result_heading":
                      "Progress check result", "hook_script": "", "hook_events": {"suspend": True},
                      "stack_key_type": "", "delete_age": "", "launch_timeout": None})
    assert result.values == {"lab_group": LEGACY_LAB_GROUP} and result.notes == ()


def test_zero_timeouts_meant_unset_and_bad_values_are_errors() -> None:
    zero = convert({"launch_timeout": 0, "delete_age": "0"})
    assert "launch_timeout" not in zero.values and "delete_timeout" not in zero.values
    assert set(kinds(zero.notes, CHANGED)) == {"launch_timeout", "delete_age"}
    bad = convert({"delete_age": "a week", "stack_protocol": "telnet", "stack_key_type": "dsa"})
    assert {n.field for n in bad.errors} == {"delete_age", "stack_protocol", "stack_key_type"}


def test_check_timeout_can_be_chosen_or_left_to_labxblock() -> None:
    chosen = convert({"tests": ["true"]}, check_timeout=60).values["checks"]
    assert chosen == [{"name": "", "script": "true", "timeout": 60}]
    default = convert({"tests": ["true"]}, check_timeout=None).values["checks"]
    assert authoring.check_specs({"checks": default})[0]["timeout"] == 30


def test_every_converted_block_is_the_course_runs_one_lab_as_before() -> None:
    one = convert({"stack_template_path": "a.yaml"}).values
    two = convert({"stack_template_path": "b.yaml", "providers": [{"name": "x", "capacity": 3}]}).values
    run = "course-v1:Acme+LNX101+2024_T1"
    assert authoring.lab_key(run, one) == authoring.lab_key(run, two) == LEGACY_LAB_GROUP


def test_the_mapping_document_lists_every_field_and_column_with_its_fate() -> None:
    for f in FIELDS:
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{f.name}` |")), None)
        assert row is not None, f"docs/legacy-fields.md lacks {f.name}"
        assert (f"`{f.maps_to}`" in row) if f.maps_to else "| — |" in row, row
    for c in STACK_COLUMNS:
        assert f"| `{c.name}` | {c.kind} |" in DOC, f"docs/legacy-fields.md lacks column {c.name}"
