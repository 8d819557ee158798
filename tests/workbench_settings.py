"""Settings for the xblock-sdk workbench with labxblock installed: the test settings plus the workbench.

Run it from the repository root (one database file for both commands)::

    export LABXBLOCK_TEST_SQLITE=/tmp/labxblock-workbench.sqlite3
    .venv/bin/python -m django migrate --settings tests.workbench_settings
    .venv/bin/python -m django runserver 127.0.0.1:8000 --settings tests.workbench_settings
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403 (the same database, keys and labxblock settings)
from tests.settings import INSTALLED_APPS, MIDDLEWARE, TEMPLATES

DEBUG = True
ROOT_URLCONF = "workbench.urls"
INSTALLED_APPS = [
    *INSTALLED_APPS,
    "django.contrib.staticfiles",
    "djpyfs",  # the workbench's FS service
    "workbench",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    *MIDDLEWARE[:1],
    "django.middleware.csrf.CsrfViewMiddleware",
    *MIDDLEWARE[1:],
]
TEMPLATES = [
    {
        **TEMPLATES[0],
        "OPTIONS": {
            **TEMPLATES[0]["OPTIONS"],
            "context_processors": [
                *TEMPLATES[0]["OPTIONS"]["context_processors"],
                "django.template.context_processors.static",
                "django.template.context_processors.i18n",
            ],
        },
    }
]
STATIC_URL = "/static/"
USE_I18N = True
LANGUAGE_CODE = "en-us"
DJFS = {"type": "osfs", "directory_root": "/tmp/labxblock-workbench-djpyfs", "url_root": "/static/djpyfs"}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Only our block: the sdk's samples would crowd the index (the workbench requires this setting).
EXCLUDED_XBLOCKS = {
    "allscopes_demo", "attempts_scoreboard_demo", "equality_demo", "filethumbs", "helloworld_demo",
    "problem_demo", "sidebar_demo", "slider_demo", "textinput_demo", "thumbs", "view_counter_demo",
}
WORKBENCH = {
    "reset_state_on_restart": False,
    "services": {
        "fs": "xblock.reference.plugins.FSService",
        "settings": "workbench.services.SettingsService",
    },
}
