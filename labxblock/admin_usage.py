"""The admin's usage page: a table per learner, lab or course run, its CSV, and a chart of labs up.

The chart is plain SVG drawn by the template (every label escaped by Django): no script.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.dateparse import parse_date

from labxblock import reports
from labxblock.conf import get_settings
from labxblock.labs import usage

CHART_WIDTH, CHART_HEIGHT, BUCKETS = 720, 160, 48


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the slice's start and its peak, for the bar's tooltip


def period(request: HttpRequest, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) from ``since``/``until`` dates (until inclusive); default: this month so far."""
    start = parse_date(request.GET.get("since") or "")
    end = parse_date(request.GET.get("until") or "")
    since = datetime.combine(start, time(), tzinfo=now.tzinfo) if start else now.replace(
        day=1, hour=0, minute=0, second=0, microsecond=0)
    until = datetime.combine(end, time(), tzinfo=now.tzinfo) + timedelta(days=1) if end else now
    return since, max(until, since + timedelta(hours=1))


def bars(series: list[tuple[datetime, int]]) -> tuple[list[Bar], int]:
    """The chart's bars, scaled to its box, and the peak they are scaled to."""
    peak = max([count for _, count in series] or [0])
    width = CHART_WIDTH / max(1, len(series))
    return [
        Bar(x=round(i * width, 2), y=round(CHART_HEIGHT - CHART_HEIGHT * count / max(1, peak), 2),
            width=round(width * 0.9, 2), height=round(CHART_HEIGHT * count / max(1, peak), 2),
            label=f"{start:%Y-%m-%d %H:%M}: {count} up")
        for i, (start, count) in enumerate(series)
    ], peak


def usage_page(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """GET ``since``, ``until`` (dates), ``course_run``, ``by`` (learner, lab, course_run), ``format=csv``."""
    since, until = period(request, timezone.now())
    course_run = request.GET.get("course_run") or None
    by = request.GET.get("by") if request.GET.get("by") in usage.GROUPINGS else "lab"
    settings = get_settings()
    rows = usage.report(since=since, until=until, course_run=course_run, by=by)
    records = reports.usage_records(rows, usage.site_prices(), settings.currency, by)
    if request.GET.get("format") == "csv":
        out = io.StringIO()
        reports.write(records, reports.USAGE_COLUMNS, "csv", out)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="labxblock-usage-{since:%Y%m%d}.csv"'
        return response
    chart, peak = ([], 0)
    if course_run:
        chart, peak = bars(usage.up_series(course_run=course_run, since=since, until=until, buckets=BUCKETS))
    context = {
        **model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
        "title": "Lab usage", "columns": reports.USAGE_COLUMNS, "by": by,
        "groupings": usage.GROUPINGS,
        "cells": [[r[c] for c in reports.USAGE_COLUMNS] for r in records],
        "since": since, "until": until, "course_run": course_run or "",
        "last_day": until - timedelta(seconds=1), "chart": chart, "peak": peak,
        "chart_width": CHART_WIDTH, "chart_height": CHART_HEIGHT, "currency": settings.currency,
        "csv_query": request.GET.copy().urlencode() + "&format=csv",
    }
    return TemplateResponse(request, "admin/labxblock/lab/usage.html", context)
