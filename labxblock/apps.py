"""The Django app, installed by edx-platform's plugin mechanism (no INSTALLED_APPS edit)."""

from django.apps import AppConfig


class LabXBlockConfig(AppConfig):
    """labxblock's Django app: models, admin, management commands, periodic tasks."""

    name = "labxblock"
    verbose_name = "Labs"
    default_auto_field = "django.db.models.BigAutoField"

    # edx_django_utils.plugins reads this; plain strings so no edx import is needed.
    plugin_app = {
        "settings_config": {
            "lms.djangoapp": {"common": {"relative_path": "settings.common"}},
            "cms.djangoapp": {"common": {"relative_path": "settings.common"}},
        },
    }

    def ready(self) -> None:
        # Registers the system check that reports a bad XBLOCK_SETTINGS["labxblock"]
        # at startup (manage.py check, runserver, LMS/Studio boot) with the key's name.
        from labxblock import conf  # noqa: F401
