"""Which line a validation message names: Heat 27's answers (recorded in the rig), read without a cloud."""

from __future__ import annotations

import pytest

from labxblock.providers import openstack_validate, template_lines
from labxblock.providers.base import TemplateProblem

TEMPLATE = """heat_template_version: 2018-08-31
parameters:
  run: {type: string}
  flavor: {type: string}
  image: {type: string, default: debian}
resources:
  server:
    type: OS::Nope::Server
    properties:
      lenth: 3
outputs:
  public_ip:
    value: {get_attr: [server, nope]}
"""

# Heat 27's messages for templates like TEMPLATE, as its API answered them in the rig.
HEAT_SAID = [
    ("The Resource Type (OS::Nope::Server) could not be found.", 8),
    ("Property error: resources.server.properties: Unknown Property lenth", 9),
    ("outputs.public_ip.value.get_attr: The Referenced Attribute (server nope) is incorrect.", 13),
    ('The template version is invalid: "heat_template_version: 2099-01-01". "heat_template_version" '
     "should be one of: 2013-05-23, 2018-08-31", 1),
    ("The template section is invalid: outputs", 11),
    ("The Parameter (flavor) was not provided.", 4),
    ("Template not in valid format: Template format version not found.", None),
]


@pytest.mark.parametrize(("message", "line"), HEAT_SAID)
def test_heat_messages_point_at_the_line_they_name(message, line) -> None:
    assert template_lines.heat_position(TEMPLATE, message) == (line, None)


YAML_ERROR = (
    "Template not in valid format: Error parsing template [root stack] while parsing a block mapping\n"
    '  in "<unicode string>", line 3, column 3:\n'
    "      r:\n"
    "      ^\n"
    "expected <block end>, but found '<block mapping start>'\n"
    '  in "<unicode string>", line 5, column 4:\n'
    "       bad: [\n"
    "       ^"
)


def test_a_yaml_error_names_where_parsing_stopped_and_reads_as_one_sentence() -> None:
    problem = openstack_validate.refusal("whatever", YAML_ERROR)
    assert problem == TemplateProblem(
        "Error parsing template [root stack] while parsing a block mapping; "
        "expected <block end>, but found '<block mapping start>'", 5, 4)


def test_a_message_naming_no_place_has_no_line() -> None:
    problem = openstack_validate.refusal(TEMPLATE, "Template not in valid format: The template is not a "
                                                   "JSON object or YAML mapping.")
    assert problem == TemplateProblem("The template is not a JSON object or YAML mapping.", None, None)


def test_a_place_missing_from_the_template_falls_back_to_its_nearest_parent() -> None:
    assert template_lines.line_of(TEMPLATE, ["outputs", "private_key", "value"]) == 11
    assert template_lines.line_of(TEMPLATE, ["nothing"]) is None
    assert template_lines.line_of("a: [", ["a"]) is None  # unparsable: no line rather than a wrong one


def test_parameters_heat_lists_without_default_are_reported_unless_given() -> None:
    answer = {"Parameters": {
        "run": {"Type": "String"}, "flavor": {"Type": "String"}, "image": {"Type": "String", "Default": "x"},
        "key": {"Type": "String"},
    }}
    problems = openstack_validate.unprovided(TEMPLATE, answer, ("run",), {"parameters": {"key": "k"}})
    assert problems == [TemplateProblem(
        "The Parameter (flavor) was not provided: it has no default, and a lab gives only run", 4)]


def test_validation_keeps_short_connect_and_read_timeouts() -> None:
    assert openstack_validate.quick_timeouts((5.0, 30.0)) == (3.0, 10.0)
    assert openstack_validate.quick_timeouts((1.0, 7.0)) == (1.0, 7.0)
