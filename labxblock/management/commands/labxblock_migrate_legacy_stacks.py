"""Report the stackamole/hastexo learner stacks still alive in the cloud; adopt or delete them on request."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from labxblock import clouds
from labxblock.conf import LabSettingsError, get_settings
from labxblock.legacy import migrate, stacks
from labxblock.legacy.fields import STACK_TABLES

COLUMNS = ("stack", "course", "learner", "old status", "cloud", "action")


class Command(BaseCommand):
    help = (
        "Read the old package's stack table (stackamole_stack or hastexo_stack, in this database; the old "
        "app need not be installed), ask the configured providers which stacks are still there, and show it. "
        "Nothing changes unless --adopt (the learners keep their labs, as labxblock labs) or --delete "
        "(the stacks are deleted) is given. Safe to run again."
    )

    def add_arguments(self, parser: Any) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--adopt", action="store_true", help="Make each ready or suspended stack the "
                            "learner's labxblock lab (the stack keeps its name; secrets are encrypted).")
        action.add_argument("--delete", action="store_true", help="Delete the stacks still in the cloud, "
                            "except those a labxblock lab uses.")
        parser.add_argument("--table", choices=STACK_TABLES, help="Read only this table (default: each "
                            "that exists).")
        parser.add_argument("--course", help="Only stacks of this course run (course-v1:Org+Course+Run).")
        parser.add_argument("--include-deleted", action="store_true", help="Ask the cloud about rows the "
                            "old package recorded as deleted too.")
        parser.add_argument("--provider", action="append", default=[], metavar="OLD=NAME",
                            help="The old rows naming provider OLD are on this site's provider NAME (OLD "
                            "may be empty). Each row is looked for on its own provider only: by default "
                            "the one of the same name here.")

    def handle(self, *args: Any, adopt: bool, delete: bool, table: str | None, course: str | None,
               include_deleted: bool, provider: list[str], **options: Any) -> None:
        try:
            get_settings()
            providers = clouds.providers()
        except LabSettingsError as exc:
            raise CommandError(f"labxblock is not configured: {exc}") from None
        ours = _provider_names(provider, providers)
        names = [table] if table else stacks.tables()
        if not names:
            raise CommandError(f"no old stack table here ({' or '.join(STACK_TABLES)}): nothing to migrate")
        rows = [row for name in names
                for row in stacks.read(name, course=course, include_deleted=include_deleted)]
        findings = [migrate.locate(row, providers, ours) for row in rows]
        mode = migrate.ADOPT if adopt else migrate.DELETE if delete else None
        migrate.carry_out(findings, mode, providers, timezone.now())
        for line in migrate.where(findings, providers):
            self.stdout.write(line)
        self._table(findings)
        for line in migrate.summary(findings, mode):
            self.stdout.write(line)

    def _table(self, findings: list[migrate.Finding]) -> None:
        rows = [COLUMNS] + [
            (f.old.name, f.old.course_id, str(f.old.learner_id or "-"), f.old.status or "-", f.cloud,
             f.outcome) for f in findings
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
        for row in rows:  # the last column, the action, is not padded
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]))


def _provider_names(pairs: list[str], providers: Any) -> dict[str, str]:
    """``--provider OLD=NAME`` options as {old name: ours}; a CommandError for a wrong one."""
    names = {}
    for pair in pairs:
        old, sep, ours = pair.partition("=")
        if not sep or ours not in providers:
            raise CommandError(f"--provider {pair}: expected OLD=NAME with NAME one of this site's providers "
                               f"({', '.join(sorted(providers))})")
        names[old] = ours
    return names
