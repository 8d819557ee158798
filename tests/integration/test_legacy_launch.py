"""A lab converted from a stackamole course export launches: real worker and beat, the cloud fake.

The converted course is read as edx-platform's XML import reads a course directory
(``runtime.resources_fs``), so the lab's template comes from the course's own files.
Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from django.conf import settings
from fs.osfs import OSFS
from lxml import etree
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock.legacy.convert import LEGACY_LAB_GROUP
from labxblock.legacy.course import convert_export
from labxblock.lifecycle import State
from labxblock.models import Lab
from tests.engine_harness import lab_template, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]
DATA = Path(__file__).parents[1] / "data" / "legacy"


def post(runtime: WorkbenchRuntime, block, handler: str, data: dict | None = None) -> dict:
    request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
    return json.loads(runtime.handle(block, handler, request).body)


def test_a_converted_stackamole_lab_launches_and_reaches_ready(engine_factory, tmp_path: Path) -> None:
    engine = engine_factory()
    src, dest = tmp_path / "course.tar.gz", tmp_path / "course-labxblock.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        tar.add(DATA / "stackamole-course" / "course", arcname="course")
    assert not convert_export(src, dest).errors
    with tarfile.open(dest) as tar:
        tar.extractall(tmp_path / "out", filter="data")
    course = tmp_path / "out" / "course"
    # The course's template, as uploaded: its outputs point the readiness probe at this test's lab port.
    (course / "static" / "hot_lab.yaml").write_text(lab_template(engine.lab_port.port))

    runtime = WorkbenchRuntime("ada")
    runtime.id_generator.set_scenario("legacy-launch")
    runtime.resources_fs = OSFS(str(course))
    node = etree.parse(str(course / "vertical" / "unit_basics.xml")).getroot().find("labxblock")
    block = runtime.get_block(runtime.parse_xml_string(etree.tostring(node)))
    assert block.scope_ids.block_type == "labxblock" and block.template == "hot_lab.yaml"
    runtime.render(block, "student_view")  # the workbench makes the learner's user on the first page

    assert post(runtime, block, "status", {"launch": True})["error"] is None
    wait_for("the converted lab to be ready", lambda: post(runtime, block, "status")["phase"] == "ready",
             timeout=60, interval=0.2)
    lab = Lab.objects.get()
    assert lab.state == State.READY and lab.lab_key == LEGACY_LAB_GROUP and lab.provider == "default"
    assert lab.stack_user == "training" and engine.stacks() == {lab.stack_name}
    assert post(runtime, block, "terminal")["url"]  # the learner can open it
