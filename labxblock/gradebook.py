"""edx-platform's gradebook services that the labs reach without a block: edx-submissions and
the learner's anonymous id in a course run.

Below ``labs`` (like ``conf``): the worker publishes scores with no page, no runtime and no
``compat`` (the block's own view of edx-platform, which re-exports the workbench's naming
from here). edx-platform modules are imported only inside functions, so this imports (and
its tests run) without edx-platform installed.
"""

from __future__ import annotations

from typing import Any

WORKBENCH_USER_PREFIX = "workbench-"  # the Django user of a workbench student id (compat.viewer)


def submissions_api() -> Any:
    """edx-submissions' API (the path ORA's scores take to the gradebook); None where it is not installed.

    Installed but not in INSTALLED_APPS counts as absent: its tables would not exist.
    """
    from django.apps import apps

    if not apps.is_installed("submissions"):
        return None
    from submissions import api

    return api


def anonymous_user_id(user: Any, course_run: str) -> str | None:
    """The learner's anonymous id in the course run, as the LMS's grades app looks scores up by.

    edx-platform: ``anonymous_id_for_user``; the workbench: the workbench student id (its own
    convention, one per learner); anywhere else None.
    """
    try:
        from common.djangoapps.student.models import anonymous_id_for_user
        from opaque_keys.edx.keys import CourseKey
    except ImportError:
        username = user.get_username()
        return username[len(WORKBENCH_USER_PREFIX):] if username.startswith(WORKBENCH_USER_PREFIX) else None
    return anonymous_id_for_user(user, CourseKey.from_string(course_run))


__all__ = ["WORKBENCH_USER_PREFIX", "anonymous_user_id", "submissions_api"]
