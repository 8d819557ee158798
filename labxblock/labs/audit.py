"""Staff at a learner's lab: written to the lab's event log, with who did it."""

from __future__ import annotations

from labxblock.models import Lab, LabEvent

STAFF_TERMINAL = "terminal opened by staff"


def record_staff_terminal(lab_id: int, *, actor: str) -> None:
    """A staff member (``actor`` = ``staff:<id>``) opened the terminal of a learner's lab (masquerade)."""
    lab = Lab.objects.filter(pk=lab_id).first()
    if lab is not None:  # the lab may be gone since the ticket's lookup: then there is nothing to log on
        LabEvent.record(lab, actor=actor, reason=STAFF_TERMINAL)
