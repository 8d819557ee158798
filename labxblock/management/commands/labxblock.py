"""``manage.py lms labxblock <subcommand>``: operators' tools, for a shell, cron or ``tutor local run``.

One command with subcommands, as ``git`` or ``tutor`` have them: one name to remember and
to ``--help``, shared output formats, and every action logged alike (actor
``operator:command``). Subcommands only call labs, so each action goes through the
lifecycle as a learner's click does; the workers make the cloud calls.
"""

from __future__ import annotations

import argparse
from datetime import datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date

from labxblock import reports, sitecheck
from labxblock.conf import LabSettingsError, require_settings
from labxblock.crypto import SecretUnavailable
from labxblock.labs import operator, pools, usage
from labxblock.lifecycle import State
from labxblock.models import SECRET_FIELDS, Lab, reencrypt_secrets

LAB_FILTERS = (("course_run", "--course-run"), ("provider", "--provider"))


def _date(value: str) -> datetime:
    day = parse_date(value)
    if day is None:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}")
    return datetime.combine(day, time(), tzinfo=timezone.get_current_timezone())


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = 0.0
    if not 0 < hours <= 10000:
        raise argparse.ArgumentTypeError(f"expected hours above 0 and at most 10000, got {value!r}")
    return hours


class Command(BaseCommand):
    help = ("Operate labxblock's labs: list, suspend, delete, drain, grant, pool, usage, reconcile, check, "
            "reencrypt.")

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        listing = sub.add_parser("list", help="List labs (no secrets, no addresses).")
        self._filters(listing)
        listing.add_argument("--state", action="append", choices=[s.value for s in State],
                             help="Only labs in this state (repeatable).")
        listing.add_argument("--learner", help="Only this learner's labs (username).")
        listing.add_argument("--limit", type=int, default=None, help="At most this many labs.")
        listing.add_argument("--format", choices=reports.FORMATS, default="table")
        for name, what in (("suspend", "Suspend"), ("delete", "Delete the stacks of")):
            bulk = sub.add_parser(name, help=f"{what} every lab of a course run and/or a provider.")
            self._filters(bulk)
            bulk.add_argument("--dry-run", action="store_true", help="Say how many, change nothing.")
            if name == "delete":
                bulk.add_argument("--yes", action="store_true",
                                  help="Really delete (learners lose their labs).")
        drain = sub.add_parser("drain", help="No new launches on a provider; suspend its labs.")
        drain.add_argument("provider")
        drain.add_argument("--move", action="store_true",
                           help="Rebuild its labs on another provider of their lab at their next launch.")
        undrain = sub.add_parser("undrain", help="Let launches be placed on a drained provider again.")
        undrain.add_argument("provider")
        grant = sub.add_parser("grant", help="Grant lab time: more hours on learners' time budgets.")
        grant.add_argument("--hours", type=_hours, required=True, help="Hours to add to each lab's budget.")
        grant.add_argument("--lab-id", type=int, action="append", help="This lab (repeatable).")
        grant.add_argument("--course-run", help="Every lab of this course run (with the filters below).")
        grant.add_argument("--learner", help="Only this learner's labs (username).")
        grant.add_argument("--lab-key", help="Only this lab of the course run.")
        report = sub.add_parser("usage", help="Up-time, launches, resumes, failures, check runs and cost.")
        report.add_argument("--since", type=_date, help="First day (default: the 1st of this month).")
        report.add_argument("--until", type=_date, help="Last day, inclusive (default: up to now).")
        report.add_argument("--course-run")
        report.add_argument("--by", choices=usage.GROUPINGS, default="learner")
        report.add_argument("--format", choices=reports.FORMATS, default="csv")
        self._pool_parsers(sub.add_parser("pool", help="Warm pools: stacks of a lab built ahead."))
        sub.add_parser("reconcile", help="One reconcile pass now, in this process (jobs go to the workers).")
        sub.add_parser("check", help="Check the settings and each provider; exit 1 if any fails.")
        sub.add_parser("reencrypt", help="Re-encrypt every lab secret with the first of secret_keys "
                                         "(after putting a new key first; then the old one may go).")

    @staticmethod
    def _pool_parsers(parser: Any) -> None:
        actions = parser.add_subparsers(dest="pool_action", required=True, metavar="action")
        listing = actions.add_parser("list", help="Every pool: size, schedule, and the stacks it holds.")
        listing.add_argument("--format", choices=reports.FORMATS, default="table")
        setting = actions.add_parser("set", help="Create or change a lab's pool (unset options stay).")
        setting.add_argument("--course-run")
        setting.add_argument("--lab-key", help="As `labxblock list` shows it.")
        setting.add_argument("--from-lab", type=int, metavar="ID",
                             help="The course run, lab key and template of this lab (id as `list` shows).")
        setting.add_argument("--size", type=int, help="Stacks kept built and unassigned.")
        setting.add_argument("--keep", choices=["suspended", "running"],
                             help="suspended: ready in the cloud's resume time; running: at once, full cost.")
        setting.add_argument("--schedule", help="When the pool is kept full, e.g. 'mon-fri 08:00-18:00'; "
                                                "'' for always.")
        setting.add_argument("--time-zone", help="IANA time zone of the schedule, e.g. Europe/Berlin.")
        removing = actions.add_parser("remove", help="Remove a lab's pool and delete its unassigned stacks.")
        removing.add_argument("--course-run", required=True)
        removing.add_argument("--lab-key", required=True)

    @staticmethod
    def _filters(parser: Any) -> None:
        parser.add_argument("--course-run", help="Course run key, e.g. course-v1:Org+Course+Run.")
        parser.add_argument("--provider", help="Provider name.")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        if subcommand != "check":
            try:
                require_settings(f"labxblock {subcommand}")
            except LabSettingsError as exc:
                raise CommandError(str(exc)) from None
        getattr(self, f"do_{subcommand}")(**options)

    def _labs(self, course_run: str | None, provider: str | None, **options: Any) -> Any:
        labs = Lab.objects.all()
        if course_run:
            labs = labs.filter(course_run=course_run)
        if provider:
            labs = labs.filter(provider=provider)
        return labs

    def do_list(self, *, state: list[str] | None, learner: str | None, limit: int | None, format: str,
                **options: Any) -> None:
        labs = self._labs(**options).select_related("learner").defer(*SECRET_FIELDS)
        if state:
            labs = labs.filter(state__in=state)
        if learner:
            labs = labs.filter(learner__username=learner)
        labs = labs.order_by("course_run", "lab_key", "learner__username")[:limit]
        reports.write(reports.lab_records(labs), reports.LAB_COLUMNS, format, self.stdout)

    def _bulk(self, action: str, dry_run: bool, **options: Any) -> None:
        if not (options.get("course_run") or options.get("provider")):
            raise CommandError(f"{action}: give --course-run, --provider or both")
        ids = list(self._labs(**options).exclude(state=State.DELETED).values_list("pk", flat=True))
        if dry_run:
            self.stdout.write(f"{action}: {len(ids)} lab(s) would be considered (dry run)")
            return
        self._outcome(operator.act(action, ids, actor=operator.COMMAND_ACTOR))

    def do_suspend(self, **options: Any) -> None:
        self._bulk("suspend", **options)

    def do_delete(self, *, yes: bool, **options: Any) -> None:
        if not yes and not options["dry_run"]:
            raise CommandError("delete: learners lose these labs; add --yes to go ahead (or --dry-run)")
        self._bulk("delete", **options)

    def do_reencrypt(self, **options: Any) -> None:
        try:
            rows = reencrypt_secrets()
        except SecretUnavailable as exc:  # a token no key opens: say which lab, keep the rest as it is
            raise CommandError(f"reencrypt: {exc}; put back the key it was sealed with, run again") from None
        self.stdout.write(f"reencrypt: {rows} lab(s) rewritten with the first of secret_keys; "
                          "keys after the first may now be removed")

    def _outcome(self, outcome: operator.Outcome) -> None:
        self.stdout.write(f"{outcome.action}: {len(outcome.changed)} lab(s) on their way, "
                          f"{len(outcome.unchanged)} left as they were")

    def _provider(self, name: str) -> str:
        known = require_settings("labxblock").providers
        if name not in known:
            raise CommandError(f"no provider {name!r}; configured: {', '.join(sorted(known))}")
        return name

    def do_drain(self, *, provider: str, move: bool, **options: Any) -> None:
        self._outcome(operator.drain_provider(self._provider(provider), moves=move,
                                              actor=operator.COMMAND_ACTOR))
        self.stdout.write(f"{provider}: draining; no new launches there"
                          + ("; its labs move at their next launch" if move else ""))

    def do_undrain(self, *, provider: str, **options: Any) -> None:
        operator.undrain_provider(self._provider(provider))
        self.stdout.write(f"{provider}: launches are placed there again")

    def do_grant(self, *, hours: float, lab_id: list[int] | None, course_run: str | None, learner: str | None,
                 lab_key: str | None, **options: Any) -> None:
        if not (lab_id or course_run):
            raise CommandError("grant: give --lab-id or --course-run")
        labs = Lab.objects.filter(pk__in=lab_id) if lab_id else Lab.objects.filter(course_run=course_run)
        if learner:
            labs = labs.filter(learner__username=learner)
        if lab_key:
            labs = labs.filter(lab_key=lab_key)
        ids = list(labs.values_list("pk", flat=True))
        self._outcome(operator.act("grant", ids, actor=operator.COMMAND_ACTOR, seconds=round(hours * 3600)))

    def do_usage(self, *, since: datetime | None, until: datetime | None, course_run: str | None, by: str,
                 format: str, **options: Any) -> None:
        now = timezone.now()
        since = since or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        until = until + timedelta(days=1) if until else now
        if until <= since:
            raise CommandError("usage: --until must not be before --since")
        rows = usage.report(since=since, until=until, course_run=course_run, by=by)
        records = reports.usage_records(rows, usage.site_prices(), require_settings("usage").currency, by)
        reports.write(records, reports.USAGE_COLUMNS, format, self.stdout)

    def do_pool(self, *, pool_action: str, **options: Any) -> None:
        now = timezone.now()
        try:
            if pool_action == "set":
                keys = ("course_run", "lab_key", "from_lab", "size", "keep", "schedule", "time_zone")
                pool = pools.configure(**{key: options[key] for key in keys})
                self.stdout.write(f"pool for {pool.course_run} {pool.lab_key}: size {pool.size}, "
                                  f"{pools.target(pool, now)} now")
                if pool.blueprint_id is None:
                    self.stdout.write("its template is learned at the lab's next launch (staff may do it)")
            elif pool_action == "remove":
                count = pools.remove(options["course_run"], options["lab_key"])
                self.stdout.write(f"pool removed; {count} unassigned stack(s) will be deleted")
            else:
                records = [row.record() for row in pools.status(now)]
                reports.write(records, pools.STATUS_COLUMNS, options["format"], self.stdout)
        except pools.PoolError as exc:
            raise CommandError(f"pool {pool_action}: {exc}") from None

    def do_reconcile(self, **options: Any) -> None:
        from labxblock import tasks

        self.stdout.write(f"labxblock reconcile: {tasks.reconcile.run()} lab(s) acted on")

    def do_check(self, **options: Any) -> None:
        verdicts = sitecheck.run()
        for verdict in verdicts:
            self.stdout.write("\n".join(verdict.lines()))
        failed = [v.subject for v in verdicts if not v.ok]
        if failed:
            raise CommandError(f"labxblock check: failed: {', '.join(failed)}", returncode=1)
        self.stdout.write("labxblock check: all ok")

