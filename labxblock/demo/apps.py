"""The demo's Django app: makes the demo's Celery app current in every process that loads Django."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "labxblock.demo"
    label = "labxblock_demo"
    verbose_name = "labxblock demo"

    def ready(self) -> None:
        # The workbench sends tasks with shared_task's current app: it must be ours (our broker).
        from labxblock.demo.celery_app import app

        app.set_current()
