"""The operator's side of the Lab admin: filters, bulk actions, per-lab buttons, the usage page.

Thin: every action is ``labs.operator.act`` with the signed-in operator as actor, so it
goes through the lifecycle like a learner's click (no cloud call from the web process).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from labxblock import admin_usage
from labxblock.labs import operator
from labxblock.lifecycle import TRANSITIONAL, State
from labxblock.models import SECRET_FIELDS

DAY = 86400
# Fields only the lifecycle writes: editing them by hand would bypass it and leave no event.
LIFECYCLE_FIELDS = ("desired", "state", "provider", "deadline_at", "delete_by", "idle_at", "blueprint",
                    "tried_providers", "ip", "port", "last_seen_at", "state_changed_at", "probe_ok",
                    "launch_requested_at", "launch_seconds", "learner", "course_run", "lab_key", "pool",
                    # counted from the event log, granted by the action, run by the lifecycle
                    "used_seconds", "up_since", "budget_limits", "budget_granted_seconds", "budget_ends_at",
                    "budget_warned_at", "awaiting_learner", "hook_seconds", "hook_until", "setup_done_at")
BUTTONS = (  # (action, label) on a lab's page; extend has its own form
    ("suspend", "Suspend"), ("resume", "Resume"), ("retry", "Retry"), ("reset", "Reset"),
    ("delete", "Delete stack"),
)
CONFIRM = {"reset": "Reset", "delete": "Delete the stacks of", "extend": "Extend the delete date of",
           "grant": "Grant lab time to"}
# Actions that take an amount: (form field, largest value, seconds per unit).
AMOUNTS = {"extend": ("days", 3650, DAY), "grant": ("hours", 10000, 3600)}


class FailedFilter(admin.SimpleListFilter):
    title = "failed"
    parameter_name = "failed"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("failed", "failed"), ("retrying", "retrying (attempts > 0)")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "failed":
            return queryset.filter(state=State.FAILED)
        if self.value() == "retrying":
            return queryset.filter(attempts__gt=0).exclude(state=State.FAILED)
        return queryset


class StuckFilter(admin.SimpleListFilter):
    """Labs in a transitional state past its deadline: the reconciler should have moved them."""

    title = "stuck?"
    parameter_name = "stuck"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("past-deadline", "past their deadline")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "past-deadline":
            return queryset.filter(deadline_at__lt=timezone.now(), state__in=[s.value for s in TRANSITIONAL])
        return queryset


def _run(model_admin: Any, request: HttpRequest, action: str, ids: list[int], seconds: int | None = None
         ) -> None:
    outcome = operator.act(action, ids, actor=operator.actor_of(request.user), seconds=seconds)
    if outcome.changed:
        model_admin.message_user(request, f"{action}: {len(outcome.changed)} lab(s) on their way.",
                                 messages.SUCCESS)
    reasons: dict[str, int] = {}
    for why in outcome.unchanged.values():
        reasons[why] = reasons.get(why, 0) + 1
    for why, count in sorted(reasons.items()):
        model_admin.message_user(request, f"{action}: {count} lab(s) left as they were: {why}.",
                                 messages.WARNING)


def _seconds(request: HttpRequest, action: str) -> int | None:
    """The amount an ``AMOUNTS`` action was given (whole days or hours, within bounds), in seconds."""
    name, most, unit = AMOUNTS[action]
    try:
        amount = int(request.POST.get(name, ""))
    except ValueError:
        return None
    return amount * unit if 1 <= amount <= most else None


def _confirmed(model_admin: Any, request: HttpRequest, queryset: Any, action: str) -> HttpResponse | None:
    """Destructive or parametrised actions ask first, listing the labs (as Django's own delete does)."""
    seconds = _seconds(request, action) if action in AMOUNTS else None
    if request.POST.get("confirm") == "yes" and (action not in AMOUNTS or seconds):
        _run(model_admin, request, action, list(queryset.values_list("pk", flat=True)), seconds)
        return None
    context = {
        **model_admin.admin_site.each_context(request), "title": f"{CONFIRM[action]} these labs?",
        "labs": queryset.select_related("learner").defer(*SECRET_FIELDS)[:200],
        "count": queryset.count(), "action": f"{action}_labs", "verb": CONFIRM[action],
        "extend": action == "extend", "grant": action == "grant", "opts": model_admin.model._meta,
        "selected": list(queryset.values_list("pk", flat=True)),
        "bad_amount": request.POST.get("confirm") == "yes" and action in AMOUNTS and not seconds,
    }
    return TemplateResponse(request, "admin/labxblock/lab/confirm_operation.html", context)


def _bulk(action: str, description: str, confirm: bool = False) -> Any:
    @admin.action(description=description, permissions=["operate"])
    def run(model_admin: Any, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        if confirm:
            return _confirmed(model_admin, request, queryset, action)
        _run(model_admin, request, action, list(queryset.values_list("pk", flat=True)))
        return None

    run.__name__ = f"{action}_labs"
    return run


class LabOperationsMixin:
    """Mixed into LabAdmin: bulk actions, buttons on a lab's page, the usage page."""

    change_form_template = "admin/labxblock/lab/change_form.html"
    change_list_template = "admin/labxblock/lab/change_list.html"
    actions = [
        _bulk("suspend", "Suspend the selected labs"),
        _bulk("resume", "Resume the selected labs"),
        _bulk("retry", "Retry the selected failed labs"),
        _bulk("reset", "Reset the selected labs (their learners start afresh)", confirm=True),
        _bulk("delete", "Delete the stacks of the selected labs", confirm=True),
        _bulk("extend", "Extend the delete date of the selected labs", confirm=True),
        _bulk("grant", "Grant lab time to the selected labs (their time budgets)", confirm=True),
    ]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("labxblock.change_lab")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Rows go by the lifecycle ("Delete the stacks"); a deleted row would leave its stack to the
        # orphan sweep and its learner with no lab and no word why.
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return fields + tuple(f for f in LIFECYCLE_FIELDS if f not in fields)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path("<int:lab_id>/operate/<str:action>/", wrap(self.operate_view), name="labxblock_lab_operate"),
            path("usage/", wrap(self.usage_view), name="labxblock_lab_usage"),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
                           ) -> Any:
        context.update(operator_buttons=BUTTONS, can_operate=self.has_operate_permission(request))
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[misc]

    def operate_view(self, request: HttpRequest, lab_id: int, action: str) -> HttpResponse:
        """A button on a lab's page: POST only, the operator's permission, then back to the page."""
        return _operate(self, request, lab_id, action)

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        return admin_usage.usage_page(self, request)


def _operate(model_admin: Any, request: HttpRequest, lab_id: int, action: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not model_admin.has_operate_permission(request):
        raise PermissionDenied
    if action not in operator.ACTIONS:
        raise PermissionDenied
    seconds = _seconds(request, action) if action in AMOUNTS else None
    if action in AMOUNTS and seconds is None:
        name, most, _unit = AMOUNTS[action]
        text = f"{action}: give a number of {name} from 1 to {most}."
        model_admin.message_user(request, text, messages.ERROR)
    else:
        _run(model_admin, request, action, [lab_id], seconds)
    return HttpResponseRedirect(reverse("admin:labxblock_lab_change", args=[lab_id]))
