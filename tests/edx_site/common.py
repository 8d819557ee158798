"""Like edx-platform's ``lms/envs/common.py``: defaults, plugin apps, then the plugins' common settings."""

import os

from edx_django_utils.plugins import add_plugins, get_plugin_apps

LMS = "lms.djangoapp"  # edx-platform's ProjectType.LMS
COMMON, PRODUCTION = "common", "production"  # edx-platform's SettingsType

SECRET_KEY = "edx-site-tests-not-secret"
USE_TZ = True
# As edx-platform has it (lms/envs/common.py): other apps' migrations (edx-submissions) are made for it.
# labxblock's own models keep BigAutoField through its AppConfig.default_auto_field.
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    *get_plugin_apps(LMS),  # labxblock comes in here, by its lms.djangoapp entry point
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["EDX_SITE_DB"]}}
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("EDX_SITE_STATIC_ROOT", "/tmp/edx-site-static")
USE_I18N = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"labxblock": {"handlers": ["console"], "level": "INFO"}},
}

XBLOCK_SETTINGS: dict = {}

# Celery under the old names, and routing, as edx-platform sets them.
BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = None
CELERY_IGNORE_RESULT = True
CELERY_DEFAULT_EXCHANGE = "edx.lms.core"
CELERY_DEFAULT_QUEUE = "edx.lms.core.default"
CELERY_DEFAULT_ROUTING_KEY = CELERY_DEFAULT_QUEUE
CELERY_QUEUES = {"edx.lms.core.high": {}, CELERY_DEFAULT_QUEUE: {}, "edx.lms.core.high_mem": {}}
CELERY_ROUTES = "tests.celery_app.route_task"
CELERYBEAT_SCHEDULE: dict = {}
CELERYD_HIJACK_ROOT_LOGGER = False

add_plugins(__name__, LMS, COMMON)
