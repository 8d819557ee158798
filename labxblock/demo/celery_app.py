"""The demo's Celery app, configured like edx-platform's: old setting names, autodiscovered tasks."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labxblock.demo.settings")

app = Celery("labxblock_demo")
app.config_from_object("django.conf:settings")
app.autodiscover_tasks()
