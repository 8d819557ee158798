"""The demo's one scenario: an SSH lab run by the local provider, as the worker's OS user."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import quoteattr

SCENARIO_ID = "labxblock-demo"

TEMPLATE = """\
heat_template_version: 2021-04-16
description: One SSH server on 127.0.0.1, run by labxblock's local provider.
parameters:
  run: {type: string, default: ""}
resources:
  lab:
    type: LabXBlock::Local::SSH
outputs:
  public_ip: {value: {get_attr: [lab, public_ip]}}
  port: {value: {get_attr: [lab, port]}}
  private_key: {value: {get_attr: [lab, private_key]}}
  host_key: {value: {get_attr: [lab, host_key]}}
"""

INSTRUCTIONS = (
    "<p>This terminal is a shell in your own lab. Try <code>export MARK=42</code>, then leave this page: "
    "after the demo's short idle timeout the lab is suspended (its processes frozen). Come back and "
    "<code>echo $MARK</code>: the same shell is still there.</p>"
    "<p>Then <code>touch ~/done</code> and press <em>Check</em>.</p>"
)


def scenario_xml() -> str:
    """The OLX of the demo lab (the stack user is whoever runs the demo: the local provider's user)."""
    return (
        f'<labxblock display_name="Demo lab" stack_user={quoteattr(getpass.getuser())} protocol="ssh" '
        'key_type="ed25519">'
        f"<instructions><![CDATA[{INSTRUCTIONS}]]></instructions>"
        f"<template><![CDATA[{TEMPLATE}]]></template>"
        '<check name="done file"><![CDATA[test -f ~/done]]></check>'
        "</labxblock>"
    )


def ensure_scenario() -> None:
    """Add the demo scenario to the workbench's list (idempotent; needs the migrated database)."""
    from workbench import scenarios

    scenarios.get_scenarios()  # the installed blocks' scenarios first: this initialises the list once
    if SCENARIO_ID not in scenarios.SCENARIOS:
        scenarios.add_xml_scenario(SCENARIO_ID, "labxblock demo: a local SSH lab", scenario_xml())


class ScenarioMiddleware:
    """Adds the scenario on the first request: not at import, where `migrate` would need the tables."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.ready = False

    def __call__(self, request: Any) -> Any:
        if not self.ready:
            ensure_scenario()
            self.ready = True
        return self.get_response(request)
