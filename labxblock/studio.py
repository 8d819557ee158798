"""The lab in Studio: no learner lab is touched from there, and nested instructions are edited there.

Studio's preview runtime dispatches a block's handlers too (in author mode), with the
author as the user; ``lms_only`` makes every lab handler answer there that labs run in
the LMS, and ``studio_only`` makes the test lab's handlers (``studio_testlab``) answer
anywhere else that they are Studio's. Instructions placed as child HTML blocks are shown
by the author view with Studio's own container controls
(``StudioContainerWithNestedXBlocksMixin``): on the lab's own page (its "View" link) they
can be added, edited, reordered and deleted like a unit's components; in the unit they
are previewed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from web_fragments.fragment import Fragment
from xblock.utils.resources import ResourceLoader
from xblock.utils.studio_editable import NestedXBlockSpec, StudioContainerWithNestedXBlocksMixin

from labxblock import compat, messages

loader = ResourceLoader(__name__)
NESTED_CATEGORY = "html"  # edx-platform's HTML component


def _only(in_studio: bool, refusal: str) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """A JSON handler that runs only in (or only outside) Studio's author mode, else answers ``refusal``."""

    def decorate(handler: Callable[..., dict]) -> Callable[..., dict]:
        @functools.wraps(handler)
        def guarded(self: Any, data: dict, suffix: str = "") -> dict:
            if compat.in_studio(self) != in_studio:
                return messages.error_answer(refusal, self.ugettext)
            return handler(self, data, suffix)

        return guarded

    return decorate


# A handler acting for a learner: in Studio it answers that labs run in the LMS.
lms_only = _only(False, messages.LMS_ONLY)
# A handler for the author's test lab: anywhere but Studio it answers that test labs are Studio's.
studio_only = _only(True, messages.STUDIO_ONLY)


class NestedInstructionsMixin(StudioContainerWithNestedXBlocksMixin):
    """Child HTML blocks as the lab's instructions, editable in Studio's author view."""

    @property
    def allowed_nested_blocks(self) -> list[NestedXBlockSpec]:
        return [NestedXBlockSpec(None, category=NESTED_CATEGORY, label=self.ugettext("Instructions (HTML)"))]

    def add_author_children(self, frag: Fragment, context: dict | None) -> None:
        """Append the children's author view to ``frag`` (the author view has no script of its own)."""
        children = self.author_children(context)
        frag.add_fragment_resources(children)
        frag.add_content(children.content)
        if children.js_init_fn:  # Studio's add/reorder script for the children
            frag.initialize_js(children.js_init_fn, children.json_init_args)

    def author_children(self, context: dict | None) -> Fragment:
        """Editable children on the lab's own Studio page; previews of them anywhere else (the unit)."""
        context = dict(context or {})
        root = context.get("root_xblock")
        if root is not None and root.scope_ids.usage_id == self.scope_ids.usage_id:
            return self.author_edit_view(context)
        return self.author_preview_view(context)

    def render_children(self, context: dict, fragment: Fragment, can_reorder: bool = True,
                        can_add: bool = False) -> None:
        """Studio lays the children out with its mako template; the workbench has none: plain markup."""
        if self.runtime.service(self, "mako") is not None:
            super().render_children(context, fragment, can_reorder=can_reorder, can_add=can_add)
            return
        items = []
        for child_id in self.children:
            child = self.runtime.get_block(child_id)
            view = "author_view" if hasattr(child, "author_view") else "student_view"
            rendered = child.render(view, context)
            fragment.add_fragment_resources(rendered)
            items.append({"id": str(child_id), "content": rendered.content})
        fragment.add_content(loader.render_django_template("templates/children.html", {"items": items}))
