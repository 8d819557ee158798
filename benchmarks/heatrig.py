"""What the benchmarks against real Keystone + Heat share (the tests' rig, started by ``Rig(heat=True)``).

The rig's Heat runs the resource ``LabXBlock::Test::Server`` (tests/services/openstack/
heat_plugins), which takes real time on every action without holding an engine thread.
Heat's own completion time of a stack is its stack-level event (``OS::Heat::Stack``,
CREATE COMPLETE), read from Heat's database for microseconds (the API's ``event_time``
has whole seconds), else from the API.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ROOT


def lab_template(port: int, create_secs: float) -> str:
    """A lab on the rig's Heat whose create takes ``create_secs`` and which answers on ``port``."""
    from tests.engine_harness import rig_lab_template

    return rig_lab_template(port, create_secs)


def lab_spec(port: int, create_secs: float) -> Any:
    from labxblock.labs import LabSpec, ProviderChoice

    choice = ProviderChoice("default", None, lab_template(port, create_secs))
    return LabSpec(course_run="course-v1:Org+Heat+Run", lab_key="lab", providers=(choice,))


def heat_db(rig: Any) -> Path:
    """Heat's SQLite database in the rig's state directory."""
    return Path(rig.workdir) / "openstack" / "state" / "heat.db"


def _when(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def completed_at(rig: Any, provider: Any, refs: Iterable[Any]) -> dict[str, float]:
    """When Heat marked each stack CREATE COMPLETE (epoch seconds), by stack name."""
    refs = list(refs)
    found: dict[str, float] = {}
    path = heat_db(rig)
    if path.exists():
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            for ref in refs:
                row = db.execute(
                    "SELECT created_at FROM event WHERE stack_id = ? AND resource_type = 'OS::Heat::Stack' "
                    "AND resource_action = 'CREATE' AND resource_status = 'COMPLETE'", (ref.data["id"],)
                ).fetchone()
                if row:
                    found[ref.name] = _when(row[0])
    for ref in refs:  # the API's word, to the second, where the database did not say
        if ref.name not in found:
            for event in provider.heat.events.list(f"{ref.name}/{ref.data['id']}"):
                if (event.resource_name == ref.name and "CREATE" in event.resource_status
                        and "COMPLETE" in event.resource_status):
                    found[ref.name] = _when(event.event_time.rstrip("Z"))
    return found


_ACCESS = re.compile(r'\[(?P<at>\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d)\] "(?P<method>[A-Z]+) (?P<path>\S+)')


def heat_requests(rig: Any, since: float, until: float) -> dict[str, int]:
    """Requests Heat's API served between two epoch times, by method and kind (its access log)."""
    counts: dict[str, int] = {}
    for line in Path(rig.heat.heat_log).read_text(errors="replace").splitlines():
        match = _ACCESS.search(line)
        if not match:
            continue
        at = time.mktime(time.strptime(match["at"], "%d/%b/%Y %H:%M:%S"))
        if since <= at <= until:
            path = match["path"].split("?", 1)
            kind = "list" if path[0].endswith("/stacks") and match["method"] == "GET" else "other"
            if kind == "list" and len(path) > 1 and "status=" in path[1]:
                kind = "busy list"
            key = f"{match['method']} {kind}"
            counts[key] = counts.get(key, 0) + 1
    return counts


__all__ = ["ROOT", "completed_at", "heat_db", "heat_requests", "lab_spec", "lab_template"]
