"""A host Celery app configured the way edx-platform configures its own.

edx-platform reads Celery settings from Django settings under the old names
(``BROKER_URL``, ``CELERYBEAT_SCHEDULE``…) and finds tasks with
``autodiscover_tasks()``; labxblock must work in exactly that setting.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("labxblock_tests")
app.config_from_object("django.conf:settings")
app.autodiscover_tasks()
