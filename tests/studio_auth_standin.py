"""A stand-in for edx-platform's ``common.djangoapps.student.auth``, for a site without edx-platform.

It is installed as that module in ``sys.modules`` (the boundary ``compat`` imports lazily),
and answers ``has_studio_write_access(user, course_key)`` by edx-platform's rules: global
staff (``user.is_staff``), an instructor of the course's organisation, or an instructor or
staff member of the course itself (any branch of it) may edit; nobody else. Like the real
one it needs an opaque-keys course key (it reads ``org`` and ``for_branch``), never a string.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import types
from collections.abc import Iterator
from typing import Any

EDIT_ROLES = ("instructor", "staff")


class StudioRoles:
    """The site's course-team roles: (user id, role, course key text or "org:<org>")."""

    def __init__(self) -> None:
        self.granted: set[tuple[int, str, str]] = set()

    def grant(self, user: Any, role: str, course_key: str) -> None:
        self.granted.add((user.pk, role, course_key))

    def has_studio_write_access(self, user: Any, course_key: Any) -> bool:
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return False
        if user.is_staff:
            return True
        if (user.pk, "instructor", f"org:{course_key.org}") in self.granted:
            return True
        course = str(course_key.for_branch(None))
        return any((user.pk, role, course) in self.granted for role in EDIT_ROLES)


@contextlib.contextmanager
def installed() -> Iterator[StudioRoles]:
    """``common.djangoapps.student.auth`` importable while inside; yields its roles to grant."""
    roles = StudioRoles()
    names = ("common", "common.djangoapps", "common.djangoapps.student", "common.djangoapps.student.auth")
    modules = {name: types.ModuleType(name) for name in names}
    for parent, child in itertools.pairwise(names):
        setattr(modules[parent], child.rsplit(".", 1)[1], modules[child])
    modules[names[-1]].has_studio_write_access = roles.has_studio_write_access  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(modules)
    try:
        yield roles
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
