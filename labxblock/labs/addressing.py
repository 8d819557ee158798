"""May labxblock contact this lab's address? The site's policy for one provider, and the check.

A lab's address and port come from its template's outputs (and the author's
ports in Studio), so an author controls them. They are checked when the outputs
are recorded and again before every probe, check run and terminal ticket: the
operator may have narrowed ``allowed_networks`` since, or a host name may now
resolve elsewhere. Callers connect to the address :func:`check` returns, never to
the name again. The port is checked in the same step, before any secret is read.
"""

from __future__ import annotations

from typing import Any

from labxblock.addresses import EVERYWHERE, AddressPolicy, AddressRefused
from labxblock.conf import get_settings, site_service_networks


class BadPort(AddressRefused):
    """The lab's port (a template output or the author's port in Studio) is not 1-65535."""


def policy(provider: str) -> AddressPolicy:
    """The policy for labs on ``provider``: its allowed networks over the site's refusals.

    A provider no longer in the settings gets the default (everywhere but the refused).
    """
    conf = get_settings().providers.get(provider)
    allowed = conf.allowed_networks if conf is not None else EVERYWHERE
    return AddressPolicy(allowed=allowed, refused=site_service_networks())


def check_port(port: Any) -> int:
    """``port`` if it is a port number, else BadPort (whose message names it, nothing secret)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise BadPort(f"lab port {port!r} is not a port number (1-65535)")
    return port


def check(provider: str, host: str, port: Any) -> tuple[str, int]:
    """The address to connect to and the port; BadPort or AddressRefused saying why not."""
    return policy(provider).check(host, check_port(port))


__all__ = ["AddressRefused", "BadPort", "check", "check_port", "policy"]
