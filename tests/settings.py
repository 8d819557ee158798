"""Django settings for the tests and the xblock-sdk workbench.

``LABXBLOCK_TEST_DB`` picks the database: ``sqlite`` (default) or ``mariadb``
(a private server started by ``tests.services.mariadb``, which exports the
``LABXBLOCK_TEST_MARIADB_*`` variables read here). Paths and ports travel in
environment variables so processes the tests start (Celery workers) share the
same database as the test process.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import django

SECRET_KEY = "labxblock-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
# As edx-platform has it (lms/envs/common.py): other apps' migrations (edx-submissions) are made for it.
# labxblock's own models keep BigAutoField through its AppConfig.default_auto_field.
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "submissions",  # edx-submissions: the path check scores take to the gradebook from the worker
    "labxblock",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

TEST_DB = os.environ.get("LABXBLOCK_TEST_DB", "sqlite")
if TEST_DB not in ("sqlite", "mariadb"):
    raise RuntimeError(f"LABXBLOCK_TEST_DB must be sqlite or mariadb, not {TEST_DB!r}")

if TEST_DB == "mariadb":
    # NAME is also the test database's name: child processes that read this
    # file (not the test runner's renamed copy) must land in the same database.
    _name = os.environ.get("LABXBLOCK_TEST_MARIADB_NAME", "labxblock_test")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": _name,
            "USER": os.environ.get("LABXBLOCK_TEST_MARIADB_USER", "labxblock"),
            "PASSWORD": os.environ.get("LABXBLOCK_TEST_MARIADB_PASSWORD", ""),
            "HOST": "127.0.0.1",
            "PORT": os.environ.get("LABXBLOCK_TEST_MARIADB_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": _name, "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    }
else:
    _IMMEDIATE = {"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {}
    # A file, not :memory:, so several processes can share it; exported so that
    # child processes pick the same file.
    _path = os.environ.setdefault(
        "LABXBLOCK_TEST_SQLITE",
        str(Path(tempfile.mkdtemp(prefix="labxblock-db-")) / "labxblock.sqlite3"),
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _path,
            # IMMEDIATE: a transaction takes the write lock up front, so two that read
            # and then write wait for each other instead of failing "database is locked".
            # (A fault test shortens the busy timeout to see the database refuse: "database is locked".)
            "OPTIONS": {"timeout": float(os.environ.get("LABXBLOCK_TEST_SQLITE_TIMEOUT") or 30),
                        **_IMMEDIATE},
            "TEST": {"NAME": _path},
        }
    }

# Fixed test keys: generated once with Fernet.generate_key(); not secret.
TEST_SECRET_KEYS = [
    "sUKLjyest-zChe4V4e_wNt5HkYZYutVrDajwRCTDQGg=",
    "q8_10kVwg60T0w4zLq6m9dJnj7P7d0jcDQpZjlNyofw=",
]
TEST_TICKET_KEYS = ["5EIJxo4ocC-Og6iqMy7YGgl3HaK7pvOjzhcL4GO_KdE="]

XBLOCK_SETTINGS = {
    "labxblock": {
        "install_id": "test",
        "providers": {
            "default": {
                "type": "openstack",
                "capacity": None,
                # Test labs (sshd, the lab port) run on this host: loopback is allowed on purpose.
                "allowed_networks": ["127.0.0.0/8"],
                "auth_url": "http://127.0.0.1:5000/v3",
                "username": "test",
                "password": "test",
                "project_name": "test",
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
        },
        "secret_keys": TEST_SECRET_KEYS,
        "ticket_keys": TEST_TICKET_KEYS,
        "terminal_mode": "console",
        "gateway_url": "ws://127.0.0.1:8765/",
    },
}

# Tests that start Celery workers hand them their lab settings (the cloud fake's
# address, short deadlines) through this variable; the test process itself uses
# override_settings with the same values.
_overrides = os.environ.get("LABXBLOCK_TEST_LAB_SETTINGS")
if _overrides:
    XBLOCK_SETTINGS["labxblock"] = {**XBLOCK_SETTINGS["labxblock"], **json.loads(_overrides)}

# Celery as edx-platform configures it: old setting names, read by
# ``config_from_object("django.conf:settings")`` in tests/celery_app.py.
BROKER_URL = os.environ.get("LABXBLOCK_TEST_BROKER_URL", "memory://")
CELERY_RESULT_BACKEND = None
CELERY_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERYD_PREFETCH_MULTIPLIER = 1
CELERYBEAT_SCHEDULE: dict = {}
# Routing as edx-platform's (lms/envs/common.py and production.py): queues and a default
# queue of its own, and a router in CELERY_ROUTES. Ours is stricter than edx-platform's
# (which leaves unlisted tasks to the default routing): it claims every task for the
# platform's default queue. Test workers consume only labxblock's queues, so a send that
# did not name its queue would never run.
CELERY_DEFAULT_EXCHANGE = "edx.lms.core"
CELERY_DEFAULT_QUEUE = "edx.lms.core.default"
CELERY_DEFAULT_ROUTING_KEY = CELERY_DEFAULT_QUEUE
CELERY_QUEUES = {"edx.lms.core.high": {}, CELERY_DEFAULT_QUEUE: {}, "edx.lms.core.high_mem": {}}
CELERY_ROUTES = "tests.celery_app.route_task"
EXPLICIT_QUEUES: dict = {}  # task name -> {"queue": ...}, as edx-platform's router reads it
# Redelivery of a task whose worker died: longer than any task's time limit (150 s) in
# production; short here so the fault tests see it happen.
BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("LABXBLOCK_TEST_VISIBILITY_TIMEOUT", "3600")),
}
