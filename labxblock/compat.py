"""Everything that differs between edx-platform and the xblock-sdk workbench, in one place.

edx-platform modules are imported only inside functions, so the block imports
(and its tests run) without edx-platform installed. The gradebook's services that the
labs use from a worker (edx-submissions, anonymous ids) are in ``gradebook``, below the
labs; the worker's analytics reach ``emit_tracking_event`` here through signals
(``analytics.connect``), so nothing under ``labs`` imports this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

# The services the labs reach without a block live below them (gradebook.py); the workbench's
# user naming is shared with them.
from labxblock.gradebook import WORKBENCH_USER_PREFIX

log = logging.getLogger(__name__)

ATTR_USER_ID = "edx-platform.user_id"
ATTR_USERNAME = "edx-platform.username"
ATTR_IS_AUTHENTICATED = "edx-platform.is_authenticated"
ATTR_USER_IS_STAFF = "edx-platform.user_is_staff"
ATTR_WORKBENCH_USER_ID = "xblock-workbench.user_id"


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the learner whose lab it is and, when staff masquerade, who really is."""

    user: Any  # a Django user: the learner whose lab this is
    real_user: Any  # the person at the keyboard (the same user unless masquerading)
    is_staff: bool

    @property
    def masquerading(self) -> bool:
        return self.real_user is not None and self.real_user.pk != self.user.pk

    @property
    def actor(self) -> str:
        """Who acts, for the lab's event log: ``learner:<id>`` or ``staff:<id>``."""
        if self.masquerading:
            return f"staff:{self.real_user.pk}"
        return f"learner:{self.user.pk}"


def course_run(block: Any) -> str:
    """The block's course run key as text (``course-v1:Org+Course+Run``)."""
    usage_id = block.scope_ids.usage_id
    context_key = getattr(usage_id, "context_key", None) or getattr(usage_id, "course_key", None)
    if context_key is not None:
        return str(context_key)
    course_id = getattr(block, "course_id", None)  # the workbench patches this in while rendering
    return str(course_id) if isinstance(course_id, str) and course_id else "workbench"


def _real_request_user(learner: Any) -> Any:
    """Who is really there: edx-platform puts ``real_user`` on the masqueraded user object."""
    real = getattr(learner, "real_user", None)
    if real is not None:
        return real
    try:
        from crum import get_current_user  # edx-platform's request-local user (always the real one)
    except ImportError:
        return learner
    current = get_current_user()
    return current if getattr(current, "is_authenticated", False) else learner


def viewer(block: Any) -> Viewer | None:
    """The current learner, from the XBlock user service; None for an anonymous visitor."""
    from django.contrib.auth import get_user_model

    service = block.runtime.service(block, "user")
    xuser = service.get_current_user()
    attrs = xuser.opt_attrs
    User = get_user_model()
    if attrs.get(ATTR_USER_ID) is not None:  # edx-platform
        if not attrs.get(ATTR_IS_AUTHENTICATED, True):
            return None
        # The service's own Django user (the masqueraded learner when staff masquerade) avoids a
        # query; it is private, so fall back to one primary-key lookup.
        learner = getattr(service, "_django_user", None)
        if learner is None or learner.pk != attrs[ATTR_USER_ID]:
            learner = User.objects.get(pk=attrs[ATTR_USER_ID])
        return Viewer(learner, _real_request_user(learner), bool(attrs.get(ATTR_USER_IS_STAFF)))
    student_id = attrs.get(ATTR_WORKBENCH_USER_ID)
    if student_id:  # the workbench: one Django user per workbench student id
        learner, _ = User.objects.get_or_create(username=f"{WORKBENCH_USER_PREFIX}{student_id}"[:150])
        return Viewer(learner, learner, False)
    return None


def read_course_asset(block: Any, path: str) -> str | None:
    """A course file's text from the contentstore; None if missing or there is no contentstore."""
    try:
        from xmodule.contentstore.content import StaticContent
        from xmodule.contentstore.django import contentstore
        from xmodule.exceptions import NotFoundError
    except ImportError:  # no contentstore: a runtime over a course directory has its files
        return _course_directory_file(block, path)
    usage_id = block.scope_ids.usage_id
    course_key = getattr(usage_id, "context_key", None) or getattr(usage_id, "course_key", None)
    if course_key is None:
        return None
    try:
        content = contentstore().find(StaticContent.compute_location(course_key, path))
    except NotFoundError:
        return None
    data = content.data
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _course_directory_file(block: Any, path: str) -> str | None:
    """``static/<path>`` from the runtime's ``resources_fs``, which a runtime reading a course
    directory offers (edx-platform's XML import system; the workbench when a test gives it one)."""
    resources = getattr(block.runtime, "resources_fs", None)
    name = f"static/{path.lstrip('/')}"
    if resources is None or ".." in name.split("/") or not resources.exists(name):
        return None
    return resources.readbytes(name).decode("utf-8", "replace")


def known_provider_names() -> frozenset[str] | None:
    """The site's provider names; None when the settings cannot be read (shown elsewhere)."""
    from labxblock.conf import LabSettingsError, get_settings

    try:
        return frozenset(get_settings().providers)
    except LabSettingsError:
        log.warning("labxblock settings are invalid; provider names not checked", exc_info=True)
        return None


def can_edit_course(block: Any, user: Any) -> bool:
    """Whether ``user`` may edit the block's course in Studio: what test labs ask of an author.

    edx-platform: ``common.djangoapps.student.auth.has_studio_write_access`` for the course
    key of the block's usage id (course staff and instructors, org instructors, global
    staff). Without edx-platform there are no course roles to ask. The xblock-sdk workbench
    is a developer's tool in which any visitor plays any student, so there, and only there,
    everyone may; any other runtime without edx-platform is refused (logged), never guessed.
    """
    try:
        from common.djangoapps.student.auth import has_studio_write_access
    except ImportError:
        if type(block.runtime).__module__.split(".")[0] == "workbench":
            return True
        log.warning("labxblock: no course roles to check in runtime %s: test labs refused",
                    type(block.runtime).__name__)
        return False
    key = _course_key(block)
    return key is not None and bool(has_studio_write_access(user, key))


def _course_key(block: Any) -> Any:
    """The block's course key object (edx-platform's usage ids carry it); None if there is none."""
    usage_id = block.scope_ids.usage_id
    key = getattr(usage_id, "context_key", None) or getattr(usage_id, "course_key", None)
    if key is not None:
        return key
    from opaque_keys import InvalidKeyError
    from opaque_keys.edx.keys import CourseKey

    try:
        return CourseKey.from_string(course_run(block))
    except InvalidKeyError:
        return None


def in_studio(block: Any) -> bool:
    """Studio's preview (author mode): its runtime says so with ``is_author_mode`` (edx-platform)."""
    return bool(getattr(block.runtime, "is_author_mode", False))


def emit_tracking_event(name: str, data: dict[str, Any], *, course_run: str | None = None) -> bool:
    """Emit an analytics event where there is no request (a worker): edx-platform's tracker.

    With the course's context when edx-platform's ``track`` app is there (as its own
    tasks emit). Elsewhere (the workbench, tests without event-tracking) a no-op with a
    debug log; False then. Tracking never breaks the caller: a failing backend is logged.
    """
    try:
        from eventtracking import tracker
    except ImportError:
        log.debug("labxblock: no event tracker here; not emitted: %s", name)
        return False
    try:
        default = tracker.get_tracker()
    except KeyError:  # installed, but this process set up no tracker (edx-platform's apps do)
        log.debug("labxblock: no event tracker set up; not emitted: %s", name)
        return False
    context = _course_context(course_run)
    try:
        with default.context(name, context):
            default.emit(name, data)
    except Exception:  # analytics must never fail a lab's lifecycle
        log.warning("labxblock: tracking event %s was not emitted", name, exc_info=True)
        return False
    return True


def _course_context(course_run: str | None) -> dict[str, Any]:
    """The tracking context of a course run: edx-platform's (org, course id) where it is there."""
    if not course_run:
        return {}
    try:
        from common.djangoapps.track import contexts
        from opaque_keys import InvalidKeyError
        from opaque_keys.edx.keys import CourseKey
    except ImportError:
        return {"course_id": course_run}
    try:
        return contexts.course_context_from_course_id(CourseKey.from_string(course_run))
    except InvalidKeyError:
        return {"course_id": course_run}


def platform_select() -> Any:
    """edx-platform's XBLOCK_SELECT_FUNCTION default (``prefer_xmodules``); XBlock's own elsewhere."""
    try:
        from xmodule.modulestore import prefer_xmodules
    except ImportError:
        from xblock.plugin import default_select

        return default_select
    return prefer_xmodules
