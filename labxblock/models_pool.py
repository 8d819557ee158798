"""WarmPool: stacks of one lab built ahead of its learners (imported by ``labxblock.models``).

The pool's stacks are ``Lab`` rows with no learner and ``pool`` set, driven by the
ordinary lifecycle; ``labs.pools`` keeps their number, and hands one to a learner's
first launch.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import models

from labxblock import pool_schedule

POOLED_CACHE_KEY = "labxblock:pooled-labs"  # which labs have a pool (labs.pools.pooled_labs)


class WarmPool(models.Model):
    """An operator's wish: keep ``size`` stacks of a course run's lab built, unassigned and at rest."""

    class Keep(models.TextChoices):
        SUSPENDED = "suspended", "suspended (ready in the cloud's resume time; costs storage only)"
        RUNNING = "running", "running (ready at once; costs like a lab in use)"

    course_run = models.CharField(max_length=255, help_text="Course run key, e.g. course-v1:Org+Course+Run.")
    lab_key = models.CharField(
        max_length=255, help_text="Which lab of the course run (see `manage.py lms labxblock list`)."
    )
    size = models.PositiveIntegerField(default=0, help_text="Stacks kept built and unassigned.")
    keep = models.CharField(max_length=16, choices=Keep.choices, default=Keep.SUSPENDED)
    schedule = models.CharField(
        max_length=255, blank=True,
        help_text=f"When the pool is kept full, e.g. '{pool_schedule.EXAMPLE}'; outside it the pool is "
                  "emptied. Empty: always.",
    )
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone of the schedule.")
    blueprint = models.ForeignKey(
        "labxblock.Blueprint", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="What the pool builds: the lab's template as last launched (learned from launches).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["course_run", "lab_key"], name="labxblock_pool_lab"),
        ]

    def __str__(self) -> str:
        return f"pool of {self.size} for {self.course_run} {self.lab_key}"

    def clean(self) -> None:
        try:
            self.parsed_schedule()
        except pool_schedule.ScheduleError as exc:
            field = "time_zone" if "time zone" in str(exc) else "schedule"
            raise ValidationError({field: str(exc)}) from None

    def parsed_schedule(self) -> pool_schedule.Schedule:
        return pool_schedule.parse(self.schedule, self.time_zone)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.parsed_schedule()  # a schedule that cannot be read is never stored (ScheduleError)
        super().save(*args, **kwargs)
        cache.delete(POOLED_CACHE_KEY)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        deleted = super().delete(*args, **kwargs)
        cache.delete(POOLED_CACHE_KEY)
        return deleted
