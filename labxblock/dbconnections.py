"""Give back a worker thread's database connections while it waits on the network.

A calls-worker thread waits on the cloud for up to 120 s, a check or lifecycle script for as long
as its timeout; holding a connection all that time makes the database's ``max_connections`` the
limit of calls in flight (two processes of 64 threads held 104 connections in a burst). Django
opens a new connection at the next query, so closing costs one connect (about a millisecond on a
LAN) and nothing else.
"""

from __future__ import annotations

from django.db import connections


def release() -> None:
    """Close this thread's open database connections, except one inside a transaction (a test's, or a
    caller's ``atomic``), which would be rolled back."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.in_atomic_block:
            connection.close()
