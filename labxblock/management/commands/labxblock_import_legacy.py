"""Convert a course export's stackamole/hastexo blocks into labxblock blocks, offline, and report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from labxblock.legacy.course import CourseError, convert_export
from labxblock.legacy.fields import LEGACY_CHECK_TIMEOUT


def _seconds(text: str) -> int | None:
    if text.strip().lower() == "default":
        return None
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"--check-timeout: expected seconds (1-600) or 'default', got {text!r}") from None
    if not 1 <= value <= 600:
        raise CommandError(f"--check-timeout: expected seconds between 1 and 600, got {value}")
    return value


class Command(BaseCommand):
    help = (
        "Read a course export (.tar.gz) made with stackamole-xblock or hastexo-xblock, write a copy whose "
        "<stackamole>/<hastexo> blocks are labxblock blocks, and print what could not be carried over. "
        "The input is never changed; nothing is written if a block cannot be read."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("export", help="The course export, as Studio's Export gives it (.tar.gz).")
        parser.add_argument("-o", "--output", help="Where to write the converted export "
                            "(default: beside the input, named <name>-labxblock.tar.gz).")
        parser.add_argument("--report-only", action="store_true", help="Print the report; write nothing.")
        parser.add_argument("--force", action="store_true", help="Replace the output file if it exists.")
        parser.add_argument("--check-timeout", default=str(LEGACY_CHECK_TIMEOUT), metavar="SECONDS",
                            help="Timeout of each converted check (stackamole's tests ran up to the site's "
                                 f"remote_exec_timeout, {LEGACY_CHECK_TIMEOUT} s by default); "
                                 "'default' for labxblock's own.")
        parser.add_argument("--old-fullscreen", choices=("true", "false"), default="false",
                            help="The old site's enable_fullscreen setting, which blocks with "
                                 'enable_fullscreen="inherit" followed (default false, as in stackamole).')

    def handle(self, *args: Any, export: str, output: str | None, report_only: bool, force: bool,
               check_timeout: str, old_fullscreen: str, **options: Any) -> None:
        src = Path(export)
        if not src.is_file():
            raise CommandError(f"{src}: no such file")
        dest = None if report_only else Path(output) if output else _default_output(src)
        if dest is not None and dest.exists() and not force:
            raise CommandError(f"{dest} exists; choose another --output or add --force")
        if dest is not None and dest.resolve() == src.resolve():
            raise CommandError("the output would replace the input; choose another --output")
        try:
            report = convert_export(src, dest, check_timeout=_seconds(check_timeout),
                                    inherit_fullscreen=old_fullscreen == "true")
        except CourseError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report.text())
        if report.errors:
            raise CommandError(f"{len(report.errors)} error(s) above: nothing was written. Fix the OLX "
                               "(or the block in Studio) and export again.")
        if dest is None:
            self.stdout.write("Nothing written (--report-only).")
        elif not report.blocks:
            self.stdout.write(f"No stackamole or hastexo blocks: {dest} is a plain copy.")
        else:
            self.stdout.write(self.style.SUCCESS(
                f"Wrote {dest}. Import it in Studio (Tools → Import) into a new course run; see the README, "
                "\"Moving from stackamole / hastexo\", before importing into a run learners are using."))


def _default_output(src: Path) -> Path:
    name = src.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return src.with_name(name[: -len(suffix)] + "-labxblock.tar.gz")
    return src.with_name(name + "-labxblock.tar.gz")
