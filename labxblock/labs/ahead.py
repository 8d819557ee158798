"""Launch ahead: a hidden block starts the learner's lab before they reach the unit that shows it.

The author places a hidden copy of the lab (same template or lab group, so the same lab
key) in the unit before the one that shows it, or in the first unit of the subsection.
When the learner opens that unit, the hidden block launches the lab without showing it;
when they arrive, it is ready (or resuming). So that browsing the course outline never
launches a course's worth of labs, a hidden block starts only a lab the learner has not
got (no row, or one whose stack was deleted), and at most ``launch_ahead_per_hour`` of
them per learner in any hour (counted from the events it writes). The lab's time budget
waits for the learner: it counts from their arrival, not from the launch ahead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from labxblock.conf import get_settings
from labxblock.labs.learner import request_launch, status_of
from labxblock.labs.specs import LabSpec, LabStatus
from labxblock.lifecycle import State
from labxblock.models import SECRET_FIELDS, Lab, LabEvent

AHEAD = "launched ahead"  # the event's reason: what the hourly limit counts
WINDOW = timedelta(hours=1)


def launch_ahead(user: Any, spec: LabSpec, *, actor: str) -> LabStatus | None:
    """Start the learner's lab ahead of them if they have not got it and the limit allows.

    Returns the lab's status as it is afterwards (None: they have no lab, and none was started).
    A lab they have is left as it is: suspended stays suspended until they reach it.
    """
    mine = Lab.objects.filter(learner=user, course_run=spec.course_run, lab_key=spec.lab_key)
    lab = mine.defer(*SECRET_FIELDS).first()
    if lab is not None and lab.state != State.DELETED:
        return status_of(lab)
    now = timezone.now()
    started = LabEvent.objects.filter(learner=user, reason=AHEAD, at__gte=now - WINDOW).count()
    if started >= get_settings().launch_ahead_per_hour:
        return status_of(lab) if lab is not None else None
    status = request_launch(user, spec, actor=actor, ahead=True)
    lab = Lab.objects.defer(*SECRET_FIELDS).get(pk=status.lab_id)
    LabEvent.build(lab, actor=actor, reason=AHEAD, from_state=lab.state, to_state=lab.state, at=now).save()
    return status
