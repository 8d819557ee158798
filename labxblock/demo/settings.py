"""Django settings of ``labxblock demo``: the xblock-sdk workbench, SQLite, the local provider.

Everything comes from the demo directory and a few environment variables set by
:mod:`labxblock.demo.runner` (so the web server, the worker and beat agree):
``LABXBLOCK_DEMO_DIR``, ``LABXBLOCK_DEMO_BROKER_URL``, ``LABXBLOCK_DEMO_GATEWAY_URL``,
``LABXBLOCK_DEMO_SUSPEND_TIMEOUT``. Keys live in ``<dir>/keys.json``, made once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEMO_DIR = Path(os.environ.get("LABXBLOCK_DEMO_DIR") or "~/.local/share/labxblock/demo").expanduser()
_keys = json.loads((DEMO_DIR / "keys.json").read_text())

SECRET_KEY = _keys["django"]
DEBUG = True  # the workbench serves its static files only in debug mode
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "labxblock.demo.urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "djpyfs",  # the workbench's FS service
    "workbench",
    "labxblock",
    "labxblock.demo",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "labxblock.demo.scenario.ScenarioMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.static",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DEMO_DIR / "demo.sqlite3"),
        # Web server, worker and beat write at once: wait for the lock instead of failing.
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
    }
}
STATIC_URL = "/static/"
USE_I18N = True
LANGUAGE_CODE = "en-us"
DJFS = {"type": "osfs", "directory_root": str(DEMO_DIR / "djpyfs"), "url_root": "/static/djpyfs"}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
EXCLUDED_XBLOCKS = {
    "allscopes_demo", "attempts_scoreboard_demo", "equality_demo", "filethumbs", "helloworld_demo",
    "problem_demo", "sidebar_demo", "slider_demo", "textinput_demo", "thumbs", "view_counter_demo",
}
WORKBENCH = {
    "reset_state_on_restart": False,
    "services": {"fs": "xblock.reference.plugins.FSService",
                 "settings": "workbench.services.SettingsService"},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"labxblock": {"handlers": ["console"], "level": "INFO"}},
}

_quick = 1  # seconds between ticks: the demo shows suspend and resume without waiting
XBLOCK_SETTINGS = {
    "labxblock": {
        "install_id": "demo",
        # The local provider's labs listen on 127.0.0.1: loopback is allowed for them on purpose.
        "providers": {"default": {"type": "local", "root": str(DEMO_DIR / "labs"),
                                  "allowed_networks": ["127.0.0.0/8"]}},
        "secret_keys": [_keys["secret"]],
        "ticket_keys": [_keys["ticket"]],
        "terminal_mode": "console",
        "gateway_url": os.environ.get("LABXBLOCK_DEMO_GATEWAY_URL", "http://127.0.0.1:8081"),
        "suspend_timeout": int(os.environ.get("LABXBLOCK_DEMO_SUSPEND_TIMEOUT", "30")),
        "keepalive_interval_seconds": 5,
        "reconcile_interval_seconds": _quick,
        "suspend_idle_interval_seconds": _quick,
        "reap_interval_seconds": 60,
        "retry_backoff_seconds": 2,
    },
}

# Celery under the old names, as edx-platform reads them. Always Redis (labxblock.demo.broker says why).
BROKER_URL = os.environ["LABXBLOCK_DEMO_BROKER_URL"]  # the runner's choice: --broker, 6379 or its own
CELERY_RESULT_BACKEND = None
CELERY_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERYD_PREFETCH_MULTIPLIER = 1
CELERYBEAT_SCHEDULE: dict = {}  # labxblock's ticks are added when beat starts (labxblock.schedule)
