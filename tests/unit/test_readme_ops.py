"""README's "Running labs for a course" stays true: every analytics event and every subcommand is there."""

from __future__ import annotations

import argparse
import re

from labxblock import analytics
from labxblock.management.commands.labxblock import Command
from tests.unit.test_readme import section

RUNNING = section("Running labs for a course")


def test_the_analytics_table_lists_every_event_and_only_those() -> None:
    documented = set(re.findall(r"^\| `edx\.labxblock\.([a-z_.]+)` \|", RUNNING, re.MULTILINE))
    assert documented == set(analytics.EVENTS)


def test_every_subcommand_of_the_labxblock_command_is_documented() -> None:
    parser = Command().create_parser("manage.py", "labxblock")
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    documented = set(re.findall(r"^\| `([a-z]+)[ `]", RUNNING, re.MULTILINE))
    assert set(subparsers.choices) <= documented
