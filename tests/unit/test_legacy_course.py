"""labxblock_import_legacy: whole course exports in each dialect, converted offline, with the report."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from lxml import etree

from labxblock import olx as own_olx
from labxblock.legacy.convert import LEGACY_LAB_GROUP
from labxblock.legacy.course import MAX_FILE_BYTES, MAX_READ_BYTES, CourseError, convert_export

DATA = Path(__file__).parents[1] / "data" / "legacy"


def export(tmp_path: Path, dialect: str) -> Path:
    """The sample course as Studio's Export gives it: course/… in a .tar.gz."""
    path = tmp_path / f"{dialect}-course.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(DATA / f"{dialect}-course" / "course", arcname="course")
    return path


def archive(path: Path, files: dict[str, str | bytes]) -> Path:
    """A .tar.gz of ``files`` (name: text or bytes), written as given."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("labxblock_import_legacy", *args, stdout=out)
    return out.getvalue()


def labs_in(files: dict[str, bytes], name: str) -> list[etree._Element]:
    return etree.fromstring(files[name]).findall(".//labxblock")


def test_a_stackamole_course_converts_and_the_report_names_what_was_dropped(tmp_path: Path) -> None:
    src = export(tmp_path, "stackamole")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    report = run(str(src), "-o", str(tmp_path / "out.tar.gz"))
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before  # the input is never touched
    assert "Old blocks found: 3 (3 stackamole)." in report
    assert 'vertical/unit_desktop.xml:2: <stackamole url_name="0c1d2e3f4a5b"> "Desktop demo"' in report
    assert "dropped: hook_script (was hook.sh): not converted" in report
    assert "dropped: progress_check_result_heading (was Answer submitted): no equivalent" in report
    assert "changed: stack_key_type (was ed25519)" in report
    assert "Summary: 2 dropped, 4 changed, 0 errors." in report

    files = members(tmp_path / "out.tar.gz")
    assert not [n for n in files if n.startswith("course/stackamole/")]  # folded into the blocks
    (basics,) = labs_in(files, "course/vertical/unit_basics.xml")
    values, children = own_olx.parse(basics)
    assert basics.get("url_name") == "9a8b7c6d5e4f" and children == []
    assert values["template"] == "hot_lab.yaml" and values["stack_user"] == "training"
    assert values["lab_group"] == LEGACY_LAB_GROUP and values["launch_timeout"] == 900
    assert values["check_label"] == "Check my work" and values["weight"] == 2.0
    assert [p["name"] for p in values["providers"]] == ["default", "backup", "retired"]
    assert values["providers"][1] == {"name": "backup", "capacity": 20, "template": "hot_lab_backup.yaml",
                                      "environment": "backup_env.yaml"}
    assert [c["script"].splitlines()[0] for c in values["checks"]] == [
        "#!/bin/bash", "#!/bin/bash", "#!/usr/bin/env python3"]
    policy = json.loads(files["course/policies/2024_T1/policy.json"])
    assert policy["course/2024_T1"]["advanced_modules"] == ["labxblock", "drag-and-drop-v2"]
    # Everything else travels byte for byte.
    original = members(src)
    for name in ("course/static/hot_lab.yaml", "course/html/welcome.html", "course/course/2024_T1.xml",
                 "course/policies/2024_T1/grading_policy.json"):
        assert files[name] == original[name]


def test_a_hastexo_course_converts_with_its_nested_blocks_inline_options_and_drafts(tmp_path: Path) -> None:
    out = tmp_path / "out.tar.gz"
    report = run(str(export(tmp_path, "hastexo")), "-o", str(out), "--check-timeout", "120")
    assert "Old blocks found: 3 (3 hastexo)." in report
    assert "dropped: hook_script (was web-hook.sh)" in report and "Done!" in report
    assert "changed: provider (was legacy-cloud): the deprecated attribute became a <provider>" in report
    files = members(out)
    (k8s,) = labs_in(files, "course/vertical/unit_k8s.xml")
    values, children = own_olx.parse(k8s)
    assert [c.get("url_name") for c in children] == ["k8s_steps", "k8s_hints"]
    assert values["check_feedback"] == "score" and values["fullscreen"] is False
    assert values["delete_timeout"] == 1209600 and values["key_type"] == "rsa"
    assert values["providers"] == [{"name": "default", "capacity": 200, "template": "k8s.yaml",
                                    "environment": "k8s_env.yaml"}, {"name": "overflow"}]
    assert {c["timeout"] for c in values["checks"]} == {120}
    assert values["checks"][0]["script"].startswith("#!/bin/bash\nkubectl get deployment web")
    (web,) = labs_in(files, "course/vertical/unit_web.xml")
    web_values, web_children = own_olx.parse(web)
    assert web_values["protocol"] == "vnc" and web_values["read_only"] is True
    assert web_values["ports"] == [{"name": "desktop", "number": 5901}]
    assert web_values["providers"] == [{"name": "legacy-cloud"}] and len(web_values["checks"]) == 2
    assert [c.get("url_name") for c in web_children] == ["web_steps"]
    (draft,) = labs_in(files, "course/drafts/vertical/unit_draft.xml")
    assert own_olx.parse(draft)[0]["checks"][0]["script"] == "#!/bin/sh\ntrue\n"
    assert json.loads(files["course/policies/2023/policy.json"])["course/2023"]["advanced_modules"] == [
        "pdf", "labxblock"]


def test_a_converted_export_has_nothing_left_to_convert(tmp_path: Path) -> None:
    first = tmp_path / "first.tar.gz"
    run(str(export(tmp_path, "stackamole")), "-o", str(first))
    report = run(str(first), "-o", str(tmp_path / "second.tar.gz"))
    assert "Old blocks found: 0 (none)." in report and "a plain copy" in report
    assert members(tmp_path / "second.tar.gz") == members(first)


def test_a_block_the_old_package_could_not_read_stops_the_conversion(tmp_path: Path) -> None:
    src = archive(tmp_path / "broken.tar.gz", {
        "course/course.xml": '<course url_name="r" org="o" course="c"/>',
        "course/vertical/u.xml": '<vertical><stackamole url_name="s" filename="s"/></vertical>',
        "course/stackamole/s.xml": '<stackamole><port name="ssh"/></stackamole>',
    })
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 error"):
        call_command("labxblock_import_legacy", str(src), "-o", str(tmp_path / "out.tar.gz"), stdout=out)
    assert "error: ports" in out.getvalue() and "needs both name and number" in out.getvalue()
    assert not (tmp_path / "out.tar.gz").exists()


def test_the_command_refuses_to_overwrite_and_explains_bad_input(tmp_path: Path) -> None:
    src = export(tmp_path, "stackamole")
    default_out = tmp_path / "stackamole-course-labxblock.tar.gz"
    run(str(src))
    assert default_out.exists()
    with pytest.raises(CommandError, match="exists"):
        run(str(src))
    run(str(src), "--force")
    with pytest.raises(CommandError, match="no such file"):
        run(str(tmp_path / "missing.tar.gz"))
    with pytest.raises(CommandError, match="check-timeout"):
        run(str(src), "--report-only", "--check-timeout", "9000")
    not_a_course = tmp_path / "plain.tar.gz"
    with tarfile.open(not_a_course, "w:gz") as tar:
        tar.add(DATA / "stackamole-course" / "course" / "static", arcname="static")
    with pytest.raises(CommandError, match=r"no course\.xml"):
        run(str(not_a_course), "--report-only")


def test_report_only_writes_nothing(tmp_path: Path) -> None:
    report = run(str(export(tmp_path, "hastexo")), "--report-only")
    assert "Nothing written" in report and list(tmp_path.iterdir()) == [tmp_path / "hastexo-course.tar.gz"]


def test_the_library_api_reports_without_writing(tmp_path: Path) -> None:
    report = convert_export(export(tmp_path, "stackamole"), None)
    assert len(report.blocks) == 3 and not report.errors
    assert any(n.field == "lab_group" for n in report.notes)  # several templates now share one lab


PORT = '<port name="ssh" number="22"/>'


@pytest.mark.parametrize("where", ["vertical/u.xml", "stackamole/s.xml"])
def test_xml_entities_are_never_read_neither_a_file_of_this_host_nor_an_expansion(tmp_path: Path,
                                                                                   where: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-of-this-host")
    doctype = (f'<!DOCTYPE x [<!ENTITY file SYSTEM "{secret.as_uri()}">'
               '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>')
    files = {
        "course/course.xml": '<course url_name="r" org="o" course="c"/>',
        "course/vertical/u.xml": '<vertical><stackamole url_name="s" filename="s" display_name="lab"/>'
                                 "<html>text</html></vertical>",
        "course/stackamole/s.xml": f"<stackamole><test>echo ok</test>{PORT}</stackamole>",
    }
    if where == "vertical/u.xml":
        files["course/" + where] = doctype + files["course/" + where].replace(
            'display_name="lab"', 'display_name="&b;"').replace("text", "&file;")
    else:
        files["course/" + where] = (doctype + "<stackamole><test>cat &lt;&lt;EOF\n&file;\nEOF</test>"
                                    f"<test>echo &b;</test>{PORT}</stackamole>")
    out = tmp_path / "out.tar.gz"
    report = convert_export(archive(tmp_path / "c.tar.gz", files), out).text()
    assert "cannot be read as XML: declares XML entities (file, a, b), which are never read" in report
    assert not out.exists()  # an error: nothing written
    assert "TOPSECRET" not in report and "a" * 100 not in report


@pytest.mark.parametrize(("sizes", "refusal"), [
    ({"course/vertical/big.xml": MAX_FILE_BYTES + 1},
     rf"course/vertical/big\.xml is {MAX_FILE_BYTES + 1} bytes uncompressed: the converter reads XML and "
     rf"policy files of at most {MAX_FILE_BYTES} bytes"),
    ({f"course/vertical/u{i}.xml": MAX_FILE_BYTES for i in range(MAX_READ_BYTES // MAX_FILE_BYTES)}
     | {"course/policies/r/policy.json": 1024},
     rf"the XML and policy files are {MAX_READ_BYTES + 1024 + 22} bytes uncompressed in all: the converter "
     rf"reads at most {MAX_READ_BYTES} bytes of them"),
], ids=["one-file", "in-all"])
def test_an_export_unpacking_to_more_than_the_caps_is_refused_before_it_is_read(
        tmp_path: Path, sizes: dict[str, int], refusal: str) -> None:
    zeros = {name: bytes(size) for name, size in sizes.items()}  # a few KiB compressed
    src = archive(tmp_path / "bomb.tar.gz", {"course/course.xml": '<course url_name="r"/>', **zeros})
    assert src.stat().st_size < 2 * 2**20  # small on disk, large unpacked
    with pytest.raises(CourseError, match=refusal):
        convert_export(src, tmp_path / "out.tar.gz")
    assert not (tmp_path / "out.tar.gz").exists()
    with pytest.raises(CommandError, match="bytes uncompressed"):
        run(str(src), "--report-only")
