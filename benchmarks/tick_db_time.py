"""(d) One suspend-idle tick, one reconcile tick and one observation over 100,000 lab rows.
Goal: <= 50 ms of database time.

    .venv/bin/python benchmarks/tick_db_time.py [--rows 100000] [--rounds 3]

Fills a private MariaDB with ``--rows`` labs in a realistic mix (mostly ready, suspended and
deleted; a few hundred in transitional states; ``--idle`` ready labs past their idle time),
then runs, in this process, what the beat's ticks run: ``periodic.mark_idle(now)`` (the
suspend-idle tick), ``engine.reconcile_provider`` and ``engine.place_queued`` and
``observe.start`` (the reconcile tick, on the database alone), then the database side of an
observation of the labs in flight: ``observe.targets`` (their stamps, read before the cloud
is asked) and ``observe.apply`` with what the cloud would show them (20 % of in-flight
operations done). Database time is the sum of every query's duration, measured around
``cursor.execute`` with ``connection.execute_wrapper``; wall time includes the Python around
it. Each round is a real tick on what the previous one left. MariaDB runs with its own
default buffer pool (128M) unless ``--buffer-pool`` says otherwise.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from common import MARIADB_BUFFER_POOL, Rig, cores, db_timer, make_parser, print_table, run, utc_now

GOAL_MS = 50.0

# (state, desired, rows): the transitional and odd rows; ready/suspended/deleted share the rest.
FEW: list[tuple[str, str, int]] = [
    ("requested", "up", 20),
    ("creating", "up", 150),
    ("starting", "up", 50),
    ("suspending", "suspended", 150),
    ("resuming", "up", 50),
    ("deleting", "deleted", 80),
    ("failed", "up", 150),
    ("ready", "suspended", 50),  # marked idle by an earlier tick, waiting for the rate budget
    ("suspended", "up", 20),  # a learner came back: to be resumed
]
SHARES = {"ready": 0.08, "suspended": 0.45}  # the rest: deleted
# The cloud's word a row holds from the last pass (so a pass rewrites it only when it changes).
RAW_STATUS = {"ready": "CREATE_COMPLETE", "suspended": "SUSPEND_COMPLETE", "creating": "CREATE_IN_PROGRESS",
              "starting": "CREATE_COMPLETE", "suspending": "SUSPEND_IN_PROGRESS",
              "resuming": "RESUME_IN_PROGRESS", "deleting": "DELETE_IN_PROGRESS", "failed": "CREATE_FAILED"}


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="lab rows in the table")
    parser.add_argument("--idle", type=int, default=150, help="ready labs past their idle time")
    parser.add_argument("--rounds", type=int, default=3, help="ticks measured, one after another")
    parser.add_argument("--budget", type=int, default=10,
                        help="rate-limited calls allowed this pass (120 a minute x 5 s ticks)")
    parser.add_argument("--top", type=int, default=5, help="slowest queries shown per round")
    parser.add_argument("--explain", action="store_true", help="print the plan of each round's slowest query")
    parser.add_argument("--buffer-pool", default=MARIADB_BUFFER_POOL,
                        help="MariaDB's innodb_buffer_pool_size (default: the server's own default)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args()


def mix(rows: int) -> list[tuple[str, str]]:
    """(state, desired) for every row, shuffled."""
    out = [(s, d) for s, d, n in FEW for _ in range(n)]
    rest = rows - len(out)
    out += [("ready", "up")] * int(rest * SHARES["ready"])
    out += [("suspended", "suspended")] * int(rest * SHARES["suspended"])
    out += [("deleted", "deleted")] * (rows - len(out))
    random.shuffle(out)
    return out


def fill(rows: int, idle: int, now: datetime) -> dict[str, int]:
    """Insert users, one blueprint and ``rows`` labs; return the count per state."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from labxblock.labs.specs import blueprint_digest
    from labxblock.models import Blueprint, Lab
    from tests.engine_harness import lab_spec

    per_user = 5
    user_model = get_user_model()
    names = [f"u{i:07d}" for i in range((rows + per_user - 1) // per_user)]
    user_model.objects.bulk_create([user_model(username=n, password="!") for n in names], batch_size=2000)
    user_ids = list(user_model.objects.filter(username__in=names).order_by("id").values_list("id", flat=True))
    content = lab_spec(22).blueprint()
    blueprint = Blueprint.objects.create(digest=blueprint_digest(content), spec=content)

    counts: dict[str, int] = {}
    batch: list[Lab] = []
    idle_left = idle
    for i, (state, desired) in enumerate(mix(rows)):
        counts[state] = counts.get(state, 0) + 1
        placed = state != "requested"
        idle_at = now + timedelta(seconds=random.uniform(10, 3600))
        if state == "ready" and desired == "up" and idle_left > 0:
            idle_at, idle_left = now - timedelta(seconds=random.uniform(0, 10)), idle_left - 1
        transitional = state in ("requested", "creating", "starting", "suspending", "resuming", "deleting")
        batch.append(Lab(
            learner_id=user_ids[i // per_user], course_run=f"course-v1:Org+C{i % 40}+Run",
            lab_key=f"lab{i % per_user}", stack_name=f"lab-test-{i:016x}", blueprint=blueprint,
            provider="default" if placed else "", desired=desired, state=state,
            provider_state={"id": str(uuid.UUID(int=i))} if placed else {},
            raw_status=RAW_STATUS.get(state, ""), stack_user="learner", port=22,
            ip="192.0.2.1" if state != "deleted" else "",
            outputs={"public_ip": "192.0.2.1"} if state in ("ready", "suspended") else {},
            last_seen_at=now - timedelta(hours=1), idle_at=idle_at,
            delete_by=now + timedelta(days=random.uniform(1, 14)),
            deadline_at=now + timedelta(seconds=random.uniform(30, 600)) if transitional else None,
            state_changed_at=now - timedelta(seconds=30), launched_at=now - timedelta(hours=2),
        ))
        if len(batch) == 2000:
            Lab.objects.bulk_create(batch)
            batch.clear()
    Lab.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE labxblock_lab, labxblock_labevent")
        cursor.fetchall()
    return counts


# What the cloud lists for a row, by state: most in-flight operations are still in flight.
def observe(state: str, rng: random.Random) -> tuple[str | None, str]:
    done = rng.random() < 0.2
    return {
        "ready": ("ready", "CREATE_COMPLETE"),
        "suspended": ("suspended", "SUSPEND_COMPLETE"),
        "creating": ("ready", "CREATE_COMPLETE") if done else ("creating", "CREATE_IN_PROGRESS"),
        "starting": ("ready", "CREATE_COMPLETE"),
        "suspending": ("suspended", "SUSPEND_COMPLETE") if done else ("suspending", "SUSPEND_IN_PROGRESS"),
        "resuming": ("ready", "RESUME_COMPLETE") if done else ("resuming", "RESUME_IN_PROGRESS"),
        "deleting": (None, "") if done else ("deleting", "DELETE_IN_PROGRESS"),
        "failed": ("failed", "CREATE_FAILED"),
    }.get(state, (None, ""))


def observations(targets: list[Any]) -> dict[Any, Any]:
    """What the observer would apply: the cloud's answer (a busy list or a read) for each target."""
    from labxblock.labs.engine import Observation
    from labxblock.lifecycle import State

    rng = random.Random(7)
    out = {}
    for target in targets:
        observed, raw = observe(target.stamp[0], rng)
        out[target] = Observation(State(observed) if observed else None, raw, "", target.provider_state)
    return out


def footprint(buffer_pool: str) -> str:
    """The lab table's size on disk beside the cache it must share."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()")
        (version,) = cursor.fetchone()
        cursor.execute(
            "SELECT data_length, index_length FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = 'labxblock_lab'"
        )
        data, index = cursor.fetchone()
    return (f"MariaDB {version}, innodb_buffer_pool_size {buffer_pool}; labxblock_lab: "
            f"{data / 2**20:.0f} MiB of rows, {index / 2**20:.0f} MiB of secondary indexes")


def measure(what: str, fn: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    with db_timer() as stats:
        result = fn()
    stats["wall"] = time.perf_counter() - started
    stats["result"] = len(result) if isinstance(result, list) else result
    stats["what"] = what
    return stats


def explain(sql: str, params: Any) -> None:
    """Print MariaDB's plan for one query."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        names = [c[0] for c in cursor.description]
        print("  EXPLAIN of the slowest query:")
        for row in cursor.fetchall():
            plan = dict(zip(names, row, strict=True))
            print("   ", {k: plan[k] for k in ("table", "type", "possible_keys", "key", "rows", "Extra")})


def main() -> None:
    args = parse()
    with Rig(engine=False, keep=args.keep, buffer_pool=args.buffer_pool):
        from labxblock.labs import engine, periodic
        from labxblock.labs import observe as observer
        from labxblock.models import Lease

        started = time.monotonic()
        counts = fill(args.rows, args.idle, utc_now())
        print(f"filled {args.rows} labs in {time.monotonic() - started:.1f} s: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), flush=True)
        print(footprint(args.buffer_pool), flush=True)
        worst = 0.0
        for round_ in range(1, args.rounds + 1):
            now = utc_now()
            targets: list[Any] = []
            stamp = partial(lambda found, at: found.extend(observer.targets("default", at)) or found,
                            targets, now)
            parts = [
                measure("suspend-idle: mark_idle", partial(periodic.mark_idle, now)),
                measure("reconcile: reconcile_provider",
                        partial(engine.reconcile_provider, "default", now, args.budget)),
                measure("reconcile: place_queued", partial(engine.place_queued, now)),
                measure("reconcile: observe.start", partial(observer.start, now)),
                measure("observe: targets", stamp),
            ]
            cloud = observations(targets)  # made by the task from the cloud's answers: not database time
            parts.append(measure("observe: apply", partial(observer.apply, "default", cloud, now)))
            observer.release_lease("observe:default", Lease.objects.get(key="observe:default").until)
            total_db = sum(p["seconds"] for p in parts) * 1000
            worst = max(worst, total_db)
            rows = [("cores (nproc)", str(cores())), ("rows", f"{args.rows} ({len(cloud)} in flight)")]
            for p in parts:
                kinds = ", ".join(f"{k} {n}: {t * 1000:.0f} ms" for k, (t, n) in sorted(p["by_kind"].items()))
                rows.append((p["what"], f"{p['seconds'] * 1000:7.1f} ms db, {p['wall'] * 1000:7.1f} ms wall, "
                                        f"{p['queries']:4d} queries ({kinds}); result {p['result']}"))
            wall = sum(p["wall"] for p in parts) * 1000
            rows.append(("ticks and observation", f"{total_db:7.1f} ms db, {wall:7.1f} ms wall, "
                                       f"{sum(p['queries'] for p in parts)} queries"))
            slow = sorted((q for p in parts for q in p["slowest"]), reverse=True)[: args.top]
            for i, (seconds, short, _, _) in enumerate(slow, 1):
                rows.append((f"slowest #{i}", f"{seconds * 1000:6.1f} ms  {short}"))
            print_table(f"tick round {round_}", rows, goal=f"db time <= {GOAL_MS:.0f} ms",
                        met=total_db <= GOAL_MS)
            if args.explain and slow:
                explain(slow[0][2], slow[0][3])
        print(f"\nworst round: {worst:.1f} ms of database time (goal <= {GOAL_MS:.0f} ms): "
              f"{'MET' if worst <= GOAL_MS else 'MISSED'}")


if __name__ == "__main__":
    run(main)
