"""The Django app, installed by edx-platform's plugin mechanism (no INSTALLED_APPS edit)."""

from django.apps import AppConfig


class LabXBlockConfig(AppConfig):
    """labxblock's Django app: models, admin, management commands, periodic tasks."""

    name = "labxblock"
    verbose_name = "Labs"
    default_auto_field = "django.db.models.BigAutoField"

    # edx_django_utils.plugins.get_plugin_apps adds every app that has this attribute to
    # INSTALLED_APPS. No settings hook: they run before the operator's values exist
    # (edx-platform's YAML, Tutor's patch), so whatever depends on the settings is
    # built from the final ones when it is used (the beat schedule when beat starts).
    plugin_app: dict = {}

    def ready(self) -> None:
        # Never raises, whatever XBLOCK_SETTINGS holds: importing conf registers the system
        # check that warns about a missing or bad XBLOCK_SETTINGS["labxblock"].
        from celery.signals import beat_init

        from labxblock import conf  # noqa: F401
        from labxblock.schedule import install_ticks

        beat_init.connect(install_ticks, dispatch_uid="labxblock.schedule.install_ticks")

        # A lab row deleted with its learner closes its up-time in the event log (usage accounting).
        from django.db.models.signals import pre_delete

        from labxblock.labs.usage import record_row_deletion
        from labxblock.models import Lab

        pre_delete.connect(record_row_deletion, sender=Lab, dispatch_uid="labxblock.usage.row_deletion")

        # The analytics of lab moves and scored check runs, told by the models' signals.
        from labxblock import analytics

        analytics.connect()

        # Time budgets are counted from the event log as it is written, in its transaction.
        from labxblock.labs.budgets import count
        from labxblock.models import LabEvent, lab_events_saved

        lab_events_saved.connect(count, sender=LabEvent, dispatch_uid="labxblock.budgets.count")
