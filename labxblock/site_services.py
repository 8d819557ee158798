"""The addresses of this site's own services: no lab address may point at them.

A template's outputs name the address that workers probe and check and the
gateway connects to, so an author could aim them at the site's database. The
services are found in Django's settings: the databases (``DATABASES`` hosts), the
Celery broker and result backend (``BROKER_URL``, ``CELERY_BROKER_URL``,
``CELERY_RESULT_BACKEND``), network caches (``CACHES`` with a memcached or Redis
backend) and the terminal gateway (``gateway_url``).

Host names are resolved once, when :func:`derive` runs. A name that does not
resolve is logged and skipped: the platform's own commands must never fail over
a lookup. An address a built-in rule refuses already (loopback, link-local …)
is not added: it stays refused unless the operator allows that network on
purpose, as the demo and the tests allow loopback, where labs and services share
one host by design.

Pure: no Django import (the settings object is passed in).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from labxblock.addresses import AddressPolicy, AddressRefused, Network, Resolver, resolve

log = logging.getLogger(__name__)

BROKER_SETTINGS = ("BROKER_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
SETTINGS = ("DATABASES", "CACHES", *BROKER_SETTINGS)  # the Django settings read here
NETWORK_CACHES = ("memcached", "redis")  # in a cache BACKEND's path (not "locmem…"): others are local
_BUILT_IN = AddressPolicy()


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # a malformed URL names no host we could refuse
        return None


def _parts(value: Any, separators: str = ";") -> Iterator[str]:
    """The items of a setting that is one string, a list of them, or ``separators``-joined strings."""
    values = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
    for item in values:
        text = str(item)
        for separator in separators[1:]:
            text = text.replace(separator, separators[0])
        yield from (part.strip() for part in text.split(separators[0]) if part.strip())


def _cache_hosts(location: Any) -> Iterator[str]:
    """Hosts in a memcached/Redis ``LOCATION``: URLs, ``host:port`` or ``[v6]:port``; sockets skipped."""
    for part in _parts(location, ";,"):
        if not part.startswith(("/", "unix:")):
            host = _hostname(part if "://" in part else f"//{part}")
            if host:
                yield host


def service_hosts(settings: Any, gateway_url: str | None) -> list[tuple[str, str]]:
    """(which setting, host) for every network service the settings name."""
    found: list[tuple[str, str]] = []
    for alias, db in dict(getattr(settings, "DATABASES", None) or {}).items():
        host = str(db.get("HOST") or "") if isinstance(db, dict) else ""
        if host and not host.startswith("/"):  # "" and a path: a local socket
            found.append((f"DATABASES[{alias!r}]", host))
    for name in BROKER_SETTINGS:
        found += [(name, host) for url in _parts(getattr(settings, name, None)) if (host := _hostname(url))]
    for alias, cache in dict(getattr(settings, "CACHES", None) or {}).items():
        backend = str(cache.get("BACKEND") or "").lower() if isinstance(cache, dict) else ""
        if any(kind in backend for kind in NETWORK_CACHES):
            found += [(f"CACHES[{alias!r}]", host) for host in _cache_hosts(cache.get("LOCATION"))]
    if gateway_url and (host := _hostname(gateway_url)):
        found.append(("gateway_url", host))
    return list(dict.fromkeys(found))


def networks(hosts: Iterable[tuple[str, str]], resolver: Resolver = resolve) -> tuple[Network, ...]:
    """Each host's addresses as /32 (/128) networks, logging what was derived and what was not."""
    derived: dict[Network, list[str]] = {}
    for what, host in hosts:
        try:
            addresses = resolver(host)
        except AddressRefused:
            log.warning("labxblock: %s names %s, which does not resolve here; labs are not kept from it",
                        what, host)
            continue
        for address in addresses:
            why = _BUILT_IN.refusal(address)
            if why is not None:
                log.info("labxblock: %s (%s) is refused to labs already: %s", address, what, why)
                continue
            derived.setdefault(ipaddress.ip_network(address), []).append(what)
    if derived:
        log.info("labxblock: lab addresses refused as this site's own services: %s",
                 ", ".join(f"{net.network_address} ({', '.join(whats)})" for net, whats in derived.items()))
    return tuple(derived)


def derive(settings: Any, gateway_url: str | None, resolver: Resolver = resolve) -> tuple[Network, ...]:
    """The networks to refuse for this site's services; () rather than an error if anything is odd."""
    try:
        return networks(service_hosts(settings, gateway_url), resolver)
    except Exception:  # odd platform settings must not stop the platform's commands
        log.warning("labxblock: cannot derive this site's service addresses from its settings", exc_info=True)
        return ()


__all__ = ["SETTINGS", "derive", "networks", "service_hosts"]
