"""Plugin settings for the LMS and Studio (edx_django_utils calls ``plugin_settings``)."""

from typing import Any


def plugin_settings(settings: Any) -> None:
    """Adjust the host's settings at startup; periodic tasks are added here."""
