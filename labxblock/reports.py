"""Operators' reports as records, and their output as a table, JSON or CSV.

Shared by the ``labxblock`` command and the admin's usage page, so a CSV from either
has the same columns. Records hold no secret and no lab address.

A CSV cell that a spreadsheet would read as a formula (usernames, lab keys and a
cloud's words are chosen by others) is written with a leading single quote, as
OWASP's "CSV Injection" advice has it: the operator who opens it runs nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

from labxblock.labs.usage import UsageRow

FORMATS = ("table", "json", "csv")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula
DELETED_LEARNER = "(deleted learner)"
WARM_POOL = "(warm pool)"  # a pool's stack before any learner had it
LAB_COLUMNS = ("id", "stack_name", "learner", "course_run", "lab_key", "provider", "state", "desired",
               "raw_status", "last_seen_at", "deadline_at", "delete_by", "status_reason")
USAGE_COLUMNS = ("course_run", "lab_key", "learner", "up_hours", "launches", "resumes", "failures",
                 "check_runs", "cost", "currency")


def lab_records(labs: Iterable[Any]) -> list[dict[str, Any]]:
    """One record per Lab row (``learner`` selected with it)."""
    return [{
        "id": lab.pk, "stack_name": lab.stack_name,
        "learner": lab.learner.get_username() if lab.learner_id else WARM_POOL,
        "course_run": lab.course_run, "lab_key": lab.lab_key, "provider": lab.provider, "state": lab.state,
        "desired": lab.desired, "raw_status": lab.raw_status, "last_seen_at": lab.last_seen_at,
        "deadline_at": lab.deadline_at, "delete_by": lab.delete_by,
        "status_reason": lab.status_reason[:200],
    } for lab in labs]


def usage_records(rows: Iterable[UsageRow], prices: Mapping[str, Decimal | None], currency: str,
                  by: str = "learner") -> list[dict[str, Any]]:
    """One record per usage row; ``cost`` is None when part of the time is on an unpriced provider."""
    return [{
        "course_run": row.course_run, "lab_key": row.lab_key,
        "learner": _learner(row) if by == "learner" else "",
        "up_hours": round(row.up_seconds / 3600, 3), "launches": row.launches, "resumes": row.resumes,
        "failures": row.failures, "check_runs": row.check_runs, "cost": row.cost(prices),
        "currency": currency,
    } for row in rows]


def _learner(row: UsageRow) -> str:
    return WARM_POOL if row.pool else row.username or DELETED_LEARNER


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _csv_cell(value: Any) -> str:
    """The cell's text, quoted with ``'`` if a spreadsheet would take it for a formula."""
    text = _text(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money keeps its digits
    return _text(value) if isinstance(value, datetime) else value


def write(records: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str, out: TextIO) -> None:
    """Write ``records`` to ``out`` as an aligned table, a JSON list or CSV with a header."""
    if fmt == "json":
        json.dump([{c: _jsonable(r.get(c)) for c in columns} for r in records], out, indent=1)
        out.write("\n")
    elif fmt == "csv":
        # RFC 4180 line ends: the writer then quotes a field holding a CR as well as an LF.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([[_csv_cell(r.get(c)) for c in columns] for r in records])
    elif fmt == "table":
        cells = [[_text(r.get(c)) for c in columns] for r in records]
        widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
        for row in [list(columns), *cells]:
            out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
