"""LabBlock: what authors place and learners open. Thin: renders, delegates to labs.py."""

from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.fields import Scope, String


class LabBlock(XBlock):
    """A learner's own lab, shown inside the courseware."""

    display_name = String(
        display_name="Display name", default="Lab", scope=Scope.settings,
        help="The name learners see for this component.",
    )

    def student_view(self, context=None) -> Fragment:
        """The learner's view (filled in by the block issue)."""
        return Fragment("<div class='labxblock'></div>")
