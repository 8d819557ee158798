"""The local provider's own template format, checked without starting anything: what create would refuse."""

from __future__ import annotations

import pytest

from labxblock.providers.local_template import check

GOOD = """heat_template_version: 2021-04-16
parameters:
  run: {type: string}
resources:
  lab:
    type: LabXBlock::Local::SSH
    properties:
      boot_seconds: 1
  word:
    type: OS::Heat::RandomString
outputs:
  public_ip: {value: {get_attr: [lab, public_ip]}}
  private_key: {value: {get_attr: [lab, private_key]}}
  password: {value: {get_attr: [word, value]}}
  host_key: {value: {get_attr: [lab, host_key]}}
"""


def test_a_good_local_template_has_no_problem() -> None:
    assert check(GOOD, ("run",)) == []


@pytest.mark.parametrize(("change", "message", "line"), [
    (("LabXBlock::Local::SSH", "OS::Nova::Server"),
     "resource lab: type 'OS::Nova::Server' is not one the local provider runs", 6),
    (("[lab, public_ip]", "[lab, address]"),
     "output public_ip: get_attr: ['lab', 'address'] names no attribute the local provider has", 12),
    (("[word, value]", "[words, value]"),
     "output password: get_attr: ['words', 'value'] names no attribute the local provider has", 14),
    (("boot_seconds: 1", "boot_seconds: forever"),
     "lab.boot_seconds: expected seconds between 0 and 3600", 8),
    (("run: {type: string}", "run: {type: string}\n  flavor: {type: string}"),
     "template parameter flavor has no value and no default", 4),
    (("    type: OS::Heat::RandomString", "    type: OS::Heat::RandomString\n    properties: {length: 0}"),
     "word.length: expected an integer from 1 to 512", 11),
])
def test_what_create_would_refuse_is_found_with_its_line(change, message, line) -> None:
    [problem] = check(GOOD.replace(*change), ("run",))
    assert problem.message.startswith(message) and problem.line == line, problem


def test_a_yaml_error_names_line_and_column() -> None:
    [problem] = check(GOOD + "  broken: [\n", ("run",))
    assert problem.message.startswith("the template is not valid YAML: while parsing a flow node")
    assert (problem.line, problem.column) == (17, 1)


def test_run_is_given_by_the_lab_but_not_declared_parameters_are_no_concern_here() -> None:
    # A template without "run" is authoring's warning; the check does not repeat it.
    assert check(GOOD.replace("  run: {type: string}\n", ""), ("run",)) == []
