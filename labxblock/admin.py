"""Operator views of labs and their event log. Secrets never appear here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils import timezone

from labxblock.admin_ops import FailedFilter, LabOperationsMixin, StuckFilter
from labxblock.conf import LabSettingsError, get_settings
from labxblock.models import SECRET_FIELDS, Lab, LabEvent, WarmPool, scrubbed


class ReadOnlyMixin:
    """No add, change or delete: the log is append-only and written by code."""

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class LabEventInline(ReadOnlyMixin, admin.TabularInline):
    model = LabEvent
    fields = ("at", "from_state", "to_state", "desired", "actor", "reason", "attempt")
    readonly_fields = fields
    extra = 0
    ordering = ("-at",)
    show_change_link = True


@admin.register(Lab)
class LabAdmin(LabOperationsMixin, admin.ModelAdmin):
    list_display = (
        "stack_name",
        "state",
        "desired",
        "provider",
        "learner",
        "course_run",
        "lab_key",
        "last_seen_at",
        "deadline_at",
    )
    list_filter = ("state", "desired", "provider", "course_run", FailedFilter, StuckFilter)
    search_fields = ("stack_name", "course_run", "learner__username")
    list_select_related = ("learner",)
    raw_id_fields = ("learner",)
    # Reasons quote the cloud (or a worker): shown scrubbed of the lab's secrets, never as stored.
    exclude = (*SECRET_FIELDS, "outputs", "raw_reason", "status_reason")
    readonly_fields = (
        "stack_name",
        "raw_status",
        "cloud_reason",
        "reason",
        "provider_state",
        "public_outputs",
        "created_at",
        "updated_at",
        "launched_at",
        "suspended_at",
        "attempts",
        "next_attempt_at",
        "call_issued_at",
        "call_accepted_at",
        "reissues",
    )
    inlines = (LabEventInline,)

    def get_queryset(self, request: Any) -> Any:
        # Never even load the ciphertext into the admin's process memory.
        return super().get_queryset(request).defer(*SECRET_FIELDS)

    @admin.display(description="raw reason")
    def cloud_reason(self, lab: Lab) -> str:
        """The cloud's own words on its status, without the lab's secrets or any private key."""
        return scrubbed(lab.pk, lab.raw_reason) if lab.raw_reason else ""

    @admin.display(description="status reason")
    def reason(self, lab: Lab) -> str:
        """Why the lab is where it is (``<Reason>: <detail>``), without the lab's secrets or any key."""
        return scrubbed(lab.pk, lab.status_reason) if lab.status_reason else ""

    @admin.display(description="outputs")
    def public_outputs(self, lab: Lab) -> dict[str, Any]:
        """The plain outputs, without any secret ones a row from an older version may still hold."""
        try:
            is_secret = get_settings().is_secret_output
        except LabSettingsError:
            return {}  # which outputs are secret is unknown: show none
        return {name: value for name, value in lab.outputs.items() if not is_secret(name)}


@admin.register(LabEvent)
class LabEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("at", "stack_name", "from_state", "to_state", "desired", "actor", "course_run")
    list_filter = ("to_state", "actor")
    search_fields = ("stack_name", "course_run")
    date_hierarchy = "at"


@admin.register(WarmPool)
class WarmPoolAdmin(admin.ModelAdmin):
    """Operators set a lab's pool here (or with ``labxblock pool set``); its stacks are Lab rows."""

    list_display = ("course_run", "lab_key", "size", "keep", "schedule", "time_zone", "template", "stacks")
    search_fields = ("course_run", "lab_key")
    fields = ("course_run", "lab_key", "size", "keep", "schedule", "time_zone", "template", "stacks")
    readonly_fields = ("template", "stacks")

    @admin.display(description="template")
    def template(self, pool: WarmPool) -> str:
        return pool.blueprint.digest[:12] if pool.blueprint_id else "learned at the lab's next launch"

    @admin.display(description="unassigned stacks")
    def stacks(self, pool: WarmPool) -> str:
        if not pool.pk:
            return "-"
        from labxblock.labs import pools

        (row,) = pools.status(timezone.now(), [pool])
        counts = row.counts
        return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
