"""Run one of labxblock's periodic ticks once, for sites that use cron instead of Celery beat."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from labxblock import tasks

TICKS = {
    "reconcile": tasks.reconcile,
    "suspend-idle": tasks.suspend_idle,
    "reap": tasks.reap,
}


class Command(BaseCommand):
    help = (
        "Run a labxblock tick once in this process: reconcile (every few seconds), suspend-idle "
        "(every ~15 s) or reap (every few minutes). Jobs it starts still go to the Celery workers."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("tick", choices=sorted(TICKS), help="Which tick to run.")

    def handle(self, *args: Any, tick: str, **options: Any) -> None:
        count = TICKS[tick].run()
        self.stdout.write(f"labxblock {tick}: {count} lab(s) acted on")
