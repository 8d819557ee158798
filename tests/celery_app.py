"""A host Celery app configured the way edx-platform configures its own.

edx-platform reads Celery settings from Django settings under the old names
(``BROKER_URL``, ``CELERYBEAT_SCHEDULE``…) and finds tasks with
``autodiscover_tasks()``; labxblock must work in exactly that setting.
"""

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("labxblock_tests")
app.config_from_object("django.conf:settings")
app.autodiscover_tasks()


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict:
    """CELERY_ROUTES of the test settings: edx-platform's router, but claiming every task.

    Like ``openedx.core.lib.celery.routers.route_task`` it answers ``EXPLICIT_QUEUES[name]``;
    a task it does not list goes to the platform's default queue (edx-platform's default
    routing does that too, unless the send names a queue).
    """
    from django.conf import settings

    return settings.EXPLICIT_QUEUES.get(name) or {"queue": settings.CELERY_DEFAULT_QUEUE}
