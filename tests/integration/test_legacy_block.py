"""Old courses through the workbench runtime: converted OLX, and the old names served by labxblock.

The sample course exports in tests/data/legacy are read as edx-platform's XML import
reads a course directory (``runtime.resources_fs``). Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import itertools
import json
import tarfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from fs.osfs import OSFS
from lxml import etree
from webob import Request
from xblock.core import XBlock
from xblock.scorable import Score

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from sample_xblocks.basic.content import HtmlBlock
from workbench.runtime import WorkbenchRuntime

from labxblock.block import LabBlock
from labxblock.legacy.block import HastexoLabBlock, StackamoleLabBlock, _log_off_once
from labxblock.legacy.convert import LEGACY_LAB_GROUP, convert
from labxblock.legacy.course import convert_export
from labxblock.models import Lab
from labxblock.olx import OlxError

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parents[1] / "data" / "legacy"
_scenario = itertools.count()
OFF = "The lab cannot be shown on this site yet. Please tell the course team."


def serving(on: bool) -> override_settings:
    return override_settings(XBLOCK_SETTINGS={
        "labxblock": {**settings.XBLOCK_SETTINGS["labxblock"], "serve_legacy_block_types": on}})


def runtime_for(course: Path | None = None, student: str = "learner") -> WorkbenchRuntime:
    runtime = WorkbenchRuntime(student)
    runtime.id_generator.set_scenario(f"legacy-{next(_scenario)}")
    if course is not None:
        runtime.resources_fs = OSFS(str(course))  # the course directory, as edx-platform's XML import has it
    return runtime


def blocks_in(runtime: WorkbenchRuntime, course: Path, unit: str) -> list:
    """The lab elements of one unit file, parsed as the course import parses them."""
    tree = etree.parse(str(course / "vertical" / unit))
    labs = [n for n in tree.getroot() if n.tag in ("labxblock", "stackamole", "hastexo")]
    return [runtime.get_block(runtime.parse_xml_string(etree.tostring(n))) for n in labs]


def post(runtime: WorkbenchRuntime, block, handler: str, data: dict | None = None) -> dict:
    request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
    return json.loads(runtime.handle(block, handler, request).body)


@pytest.fixture
def converted(tmp_path: Path):
    """Both sample courses converted by the command's code, unpacked: {dialect: course directory}."""
    out = {}
    for dialect in ("stackamole", "hastexo"):
        src, dest = tmp_path / f"{dialect}.tar.gz", tmp_path / f"{dialect}-labxblock.tar.gz"
        with tarfile.open(src, "w:gz") as tar:
            tar.add(DATA / f"{dialect}-course" / "course", arcname="course")
        assert not convert_export(src, dest).errors
        with tarfile.open(dest) as tar:
            tar.extractall(tmp_path / dialect, filter="data")
        out[dialect] = tmp_path / dialect / "course"
    return out


def test_converted_stackamole_olx_parses_into_lab_blocks_with_the_old_values(converted) -> None:
    course = converted["stackamole"]
    runtime = runtime_for(course)
    (basics,) = blocks_in(runtime, course, "unit_basics.xml")
    assert isinstance(basics, LabBlock) and not isinstance(basics, StackamoleLabBlock)
    assert basics.scope_ids.block_type == "labxblock"
    assert basics.display_name == "Linux basics lab" and basics.template == "hot_lab.yaml"
    assert basics.stack_user == "training" and basics.protocol == "ssh" and basics.launch_timeout == 900
    assert basics.lab_group == LEGACY_LAB_GROUP and basics.weight == 2.0
    assert basics.ports == [{"name": "server", "number": 22}, {"name": "web console", "number": 8080}]
    assert [c["timeout"] for c in basics.checks] == [300, 300, 300]
    (desktop,) = blocks_in(runtime, course, "unit_desktop.xml")
    assert desktop.protocol == "rdp" and desktop.read_only is True and desktop.suspend_timeout == 300
    assert desktop.delete_timeout == 604800 and desktop.check_feedback == "none" and desktop.fullscreen
    assert desktop.check_label == "Submit" and desktop.key_type == "ed25519"
    (warmup,) = blocks_in(runtime, course, "unit_intro.xml")
    assert warmup.hidden is True and warmup.providers == [{"name": "default"}]
    # Every converted lab of the course is the learner's one lab, as the one stack was before.
    assert {b._lab_key() for b in (basics, desktop, warmup)} == {LEGACY_LAB_GROUP}
    # The page the learner gets names the checks and ports of the converted lab.
    page = runtime.render(basics, "student_view").content
    assert "Check my work" in page and "web console" in page


@XBlock.register_temp_plugin(HtmlBlock, "html")
def test_converted_hastexo_olx_keeps_its_nested_blocks_as_instructions(converted) -> None:
    course = converted["hastexo"]
    runtime = runtime_for(course)
    (k8s,) = blocks_in(runtime, course, "unit_k8s.xml")
    assert [runtime.get_block(c).scope_ids.block_type for c in k8s.children] == ["html", "html"]
    assert k8s.check_feedback == "score" and k8s.stack_user == "ubuntu" and len(k8s.checks) == 2
    (web,) = blocks_in(runtime, course, "unit_web.xml")
    assert web.protocol == "vnc" and web.providers == [{"name": "legacy-cloud"}] and len(web.children) == 1


def test_an_old_element_met_by_labxblocks_parse_xml_is_converted_into_its_fields() -> None:
    course = DATA / "stackamole-course" / "course"
    runtime = runtime_for(course)
    node = etree.parse(str(course / "vertical" / "unit_desktop.xml")).getroot()[0]
    def_id = runtime.id_generator.create_definition("labxblock")
    keys = runtime.id_generator.create_usage(def_id)
    from xblock.fields import ScopeIds

    block = LabBlock.parse_xml(node, runtime, ScopeIds("learner", "labxblock", def_id, keys))
    assert block.protocol == "rdp" and block.ports == [{"name": "desktop", "number": 3389}]
    assert block.checks == [{"name": "", "script": "#!/bin/sh\ntest -f /home/student/Desktop/done.txt\n",
                             "timeout": 300}]


@pytest.fixture
def served():
    """The sample stackamole course's basics lab, unconverted, read through the old name."""
    course = DATA / "stackamole-course" / "course"
    runtime = runtime_for(course)
    (block,) = blocks_in(runtime, course, "unit_basics.xml")
    return runtime, block


def test_the_old_name_keeps_the_old_fields_and_runs_as_the_converted_lab(served) -> None:
    _, block = served
    assert isinstance(block, StackamoleLabBlock) and block.scope_ids.block_type == "stackamole"
    assert block.stack_template_path == "hot_lab.yaml" and len(block.tests) == 3  # stored as the old one did
    assert block.providers[0] == {"name": "default", "capacity": -1}
    old = {name: getattr(block, name) for name in ("stack_template_path", "stack_user_name", "tests",
                                                    "providers", "ports", "launch_timeout", "weight",
                                                    "progress_check_label", "display_name")}
    expected = convert(old).values
    values = block._values()  # what the lab is made of (sources, checks, lab key)
    for name in ("template", "stack_user", "checks", "providers", "ports", "launch_timeout", "check_label",
                 "lab_group"):
        assert values[name] == expected[name], name
    for name in ("template", "stack_user", "checks", "check_label", "lab_group"):  # read by LabBlock itself
        assert getattr(block, name) == expected[name], name
    assert block.has_score and block.max_score() == 2.0


def test_until_the_operator_turns_it_on_learners_are_told_and_nothing_happens(served, caplog) -> None:
    runtime, block = served
    _log_off_once.cache_clear()  # the operator is told once per process
    with serving(False):
        page = runtime.render(block, "student_view").content
        assert OFF in page and "Check my work" not in page
        assert post(runtime, block, "status", {"launch": True}) == {"error": OFF}
        assert post(runtime, block, "check") == {"error": OFF}
        assert not Lab.objects.exists()
        warnings = [m.text for m in block.validate().messages]
        assert any("serve_legacy_block_types" in w and "labxblock_import_legacy" in w for w in warnings)
        author = runtime.render(block, "author_view").content
        assert "serve_legacy_block_types" in author
    told = "XBLOCK_SETTINGS['labxblock']['serve_legacy_block_types']"
    assert any(told in r.message for r in caplog.records)


def test_until_then_every_handler_refuses_the_staff_panels_too(served) -> None:
    runtime, block = served
    handlers = {n for n in dir(LabBlock) if getattr(getattr(LabBlock, n), "_is_xblock_handler", False)}
    assert {"status", "check", "terminal", "staff_learners", "staff_action", "staff_open"} <= handlers
    with serving(False):
        for name in sorted(handlers):
            assert post(runtime, block, name, {"lab_id": 1, "action": "suspend"}) == {"error": OFF}, name
    assert not Lab.objects.exists()


def test_when_served_the_old_block_is_a_lab(served) -> None:
    runtime, block = served
    with serving(True):
        page = runtime.render(block, "student_view").content
        assert OFF not in page and "Check my work" in page and "web console" in page
        answer = post(runtime, block, "status", {"launch": True})
        assert answer.get("error") is None and answer["phase"] == "queued"
        lab = Lab.objects.get()
        assert lab.lab_key == LEGACY_LAB_GROUP and lab.stack_user == "training"


def test_studio_shows_what_the_served_block_does_not_carry_over() -> None:
    course = DATA / "stackamole-course" / "course"
    runtime = runtime_for(course)
    (desktop,) = blocks_in(runtime, course, "unit_desktop.xml")
    with serving(True):
        warnings = [m.text for m in desktop.validate().messages]
        assert any(w.startswith("dropped: hook_script (was hook.sh)") for w in warnings)
        assert any("progress_check_result_heading" in w for w in warnings)
        author = runtime.render(desktop, "author_view").content
        assert "Not carried over as it was" in author and "stack_key_type" in author


def test_a_served_block_exports_the_old_form_and_reads_back_the_same(served) -> None:
    runtime, block = served
    node = etree.Element("unknown")
    block.add_xml_to_node(node)
    assert node.tag == "stackamole" and node.find("test") is not None
    again = runtime.get_block(runtime.parse_xml_string(etree.tostring(node)))
    for name in ("stack_template_path", "tests", "providers", "ports", "launch_timeout",
                 "progress_check_label", "weight", "stack_user_name"):
        assert getattr(again, name) == getattr(block, name), name


@XBlock.register_temp_plugin(HtmlBlock, "html")
def test_a_served_hastexo_block_keeps_its_children_and_its_defaults() -> None:
    course = DATA / "hastexo-course" / "course"
    runtime = runtime_for(course)
    (k8s,) = blocks_in(runtime, course, "unit_k8s.xml")
    assert isinstance(k8s, HastexoLabBlock) and len(k8s.children) == 2
    assert k8s.hook_events == {"suspend": True, "resume": True, "delete": True}
    bare = runtime.get_block(runtime.parse_xml_string("<hastexo/>"))
    assert bare.display_name == "hastexo XBlock" and bare.stack_user_name is None


def test_a_learner_scored_by_the_old_block_keeps_that_score(served) -> None:
    _, block = served
    block.score = {"raw_earned": 1, "raw_possible": 2}
    assert block.has_submitted_answer()
    assert block.get_score() == Score(raw_earned=1.0, raw_possible=2.0)  # half of the lab's 2 points
    block.raw_earned = 1.0  # scored again by labxblock: that wins
    assert block.get_score() == Score(raw_earned=2.0, raw_possible=2.0)


def test_an_old_element_the_old_package_refused_is_refused_naming_the_problem() -> None:
    runtime = runtime_for()
    with pytest.raises(OlxError, match="needs both name and number"):
        runtime.parse_xml_string('<stackamole><port name="ssh"/></stackamole>')
