"""The old package's stack table, read with plain SQL: the old app need not be installed any more.

``stackamole_stack`` (stackamole-xblock) or ``hastexo_stack`` (hastexo-xblock before the
rename), in the site's own database. Only the columns that exist are read, so a table
from an older release of the old package reads too. Nothing here writes to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection as default_connection
from django.utils.dateparse import parse_datetime

from labxblock.legacy.fields import STACK_COLUMNS, STACK_TABLES

DELETED_STATUS = "DELETE_COMPLETE"  # the old package's record of a stack it deleted
READ = ("id", "name", "course_id", "learner_id", "provider", "status", "protocol", "port", "user", "ip",
        "key", "password", "launch_timestamp", "suspend_timestamp", "delete_by", "created_on")
assert set(READ) <= {c.name for c in STACK_COLUMNS}


@dataclass(frozen=True)
class OldStack:
    """One row of the old table: a learner's stack as the old package knew it. Never shows its secrets."""

    table: str
    id: int
    name: str
    course_id: str
    learner_id: int | None
    provider: str = ""
    status: str = ""
    protocol: str = ""
    port: int | None = None
    user: str = ""
    ip: str = ""
    key: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    launch_timestamp: datetime | None = None
    suspend_timestamp: datetime | None = None
    delete_by: datetime | None = None
    created_on: datetime | None = None  # when the row was made: before the learner's first stack


def tables(connection: Any = default_connection) -> list[str]:
    """The old stack tables this database has."""
    present = set(connection.introspection.table_names())
    return [t for t in STACK_TABLES if t in present]


def _moment(value: Any) -> datetime | None:
    """A datetime column as an aware UTC datetime (SQLite may hand back text; Django stores UTC)."""
    if value in (None, ""):
        return None
    moment = value if isinstance(value, datetime) else parse_datetime(str(value))
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read(
    table: str,
    *,
    course: str | None = None,
    include_deleted: bool = False,
    connection: Any = default_connection,
) -> list[OldStack]:
    """The rows of ``table``, oldest first; without the ones the old package deleted, unless asked."""
    if table not in STACK_TABLES:
        raise ValueError(f"not an old stack table: {table!r} (expected one of {', '.join(STACK_TABLES)})")
    with connection.cursor() as cursor:
        present = {c.name for c in connection.introspection.get_table_description(cursor, table)}
        columns = [c for c in READ if c in present]
        missing = {"id", "name", "course_id"} - present
        if missing:
            raise ValueError(f"{table} lacks the columns {', '.join(sorted(missing))}: not a stack table")
        quote = connection.ops.quote_name  # "key" and "user" are reserved words in MySQL
        sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)}"  # noqa: S608 (names checked)
        conditions, params = [], []
        if course:
            conditions.append(f"{quote('course_id')} = %s")
            params.append(course)
        if not include_deleted and "status" in present:
            conditions.append(f"({quote('status')} IS NULL OR {quote('status')} <> %s)")
            params.append(DELETED_STATUS)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        cursor.execute(sql + f" ORDER BY {quote('id')}", params)
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return [_old_stack(table, row) for row in rows]


def _old_stack(table: str, row: dict[str, Any]) -> OldStack:
    text = {name: str(row.get(name) or "") for name in ("provider", "status", "protocol", "user", "ip",
                                                         "key", "password")}
    return OldStack(
        table=table, id=int(row["id"]), name=str(row["name"]), course_id=str(row["course_id"]),
        learner_id=int(row["learner_id"]) if row.get("learner_id") is not None else None,
        port=int(row["port"]) if row.get("port") is not None else None,
        launch_timestamp=_moment(row.get("launch_timestamp")),
        suspend_timestamp=_moment(row.get("suspend_timestamp")), delete_by=_moment(row.get("delete_by")),
        created_on=_moment(row.get("created_on")),
        **text,
    )
