"""Shared by the launchers, which run inside the services virtualenv (not the project's).

Kept free of Keystone/Heat imports: each launcher imports this first, before the
service's own modules create any database engine.
"""

from __future__ import annotations

import ctypes
import signal
import socketserver
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer


def die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the test process dies, so a killed pytest leaks no service."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # not glibc Linux: the fixture's teardown still stops us
        pass


def sqlite_begin_immediate() -> None:
    """Make every SQLite transaction take the write lock at BEGIN.

    oslo.db emits a plain (deferred) ``BEGIN``; two transactions that read and
    then write deadlock on the lock upgrade, and SQLite answers one of them
    "database is locked" at once, without waiting for the busy timeout.
    ``BEGIN IMMEDIATE`` makes writers queue on the busy timeout instead.
    A class-level listener reaches every engine, including those made later.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def _immediate(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if conn.dialect.name == "sqlite" and statement.strip().upper() in {"BEGIN", "BEGIN DEFERRED"}:
            statement = "BEGIN IMMEDIATE"
        return statement, parameters

    event.listen(Engine, "before_cursor_execute", _immediate, retval=True)


class _QuietHandler(WSGIRequestHandler):
    """Access log lines go to stderr (the service log) like the default, minus DNS lookups."""

    def address_string(self) -> str:
        return str(self.client_address[0])


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per request: the stdlib's own, good enough on loopback."""

    daemon_threads = True
    allow_reuse_address = True


def serve(app, host: str, port: int, *, background: bool = False) -> ThreadingWSGIServer:  # type: ignore[no-untyped-def]
    """Serve ``app`` on host:port; forever, or on a daemon thread when ``background``."""
    server = ThreadingWSGIServer((host, port), _QuietHandler)
    server.set_app(app)
    print(f"serving on http://{host}:{port}", file=sys.stderr, flush=True)
    if background:
        threading.Thread(target=server.serve_forever, name="wsgi", daemon=True).start()
    else:
        server.serve_forever()
    return server
