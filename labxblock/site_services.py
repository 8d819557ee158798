"""The addresses of this site's own services: no lab address may point at them.

A template's outputs name the address that workers probe and check and the
gateway connects to, so an author could aim them at the site's database. The
services are found in Django's settings, as edx-platform (``lms/envs/common.py``,
``production.py``) and Tutor (its rendered ``lms.env.yml`` and settings) name them:

- databases: ``DATABASES`` hosts; MongoDB: ``DOC_STORE_CONFIG``, ``CONTENTSTORE`` and
  every ``DOC_STORE_CONFIG`` inside ``MODULESTORE`` (``host``: a name, a list, or a
  ``mongodb://`` URI with several hosts);
- the Celery broker and result backend (``BROKER_URL``, ``CELERY_BROKER_URL``,
  ``CELERY_RESULT_BACKEND``, ``CELERY_BROKER_HOSTNAME``); network caches (``CACHES`` with a
  memcached or Redis backend) and Redis sessions (``SESSION_REDIS``, ``SESSION_REDIS_HOST``);
- search: ``ELASTIC_SEARCH_CONFIG`` (hosts or URLs), ``MEILISEARCH_URL``; mail: ``EMAIL_HOST``;
- the LMS and Studio themselves: ``LMS_BASE``, ``CMS_BASE``, ``SITE_NAME``, ``PREVIEW_LMS_BASE``,
  ``LMS_ROOT_URL``, ``CMS_ROOT_URL``, ``LMS_INTERNAL_ROOT_URL`` and the concrete hosts of
  ``ALLOWED_HOSTS`` (not ``*`` nor ``.example.org`` patterns); and the terminal gateway
  (``gateway_url``).

Host names are resolved again every ``REFRESH_SECONDS`` (:class:`ServiceNetworks`): a
name that did not resolve at first use (its container was not up yet) or a restarted
container's new address is refused from the next refresh on. A name that does not
resolve is logged and skipped: the platform's own commands must never fail over a
lookup. An address a built-in rule refuses already (loopback, link-local …) is not
added: it stays refused unless the operator allows that network on purpose, as the demo
and the tests allow loopback, where labs and services share one host by design. Each
finding is logged once per process, not at every refresh.

Pure: no Django import (the settings object is passed in).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from labxblock.addresses import AddressPolicy, AddressRefused, Network, Resolver, resolve

log = logging.getLogger(__name__)

REFRESH_SECONDS = 300.0  # how old the derived addresses may be before the names are resolved again
BROKER_SETTINGS = ("BROKER_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
URL_SETTINGS = ("MEILISEARCH_URL", "LMS_ROOT_URL", "CMS_ROOT_URL", "LMS_INTERNAL_ROOT_URL")
HOST_SETTINGS = ("EMAIL_HOST", "LMS_BASE", "CMS_BASE", "SITE_NAME", "PREVIEW_LMS_BASE",
                 "CELERY_BROKER_HOSTNAME", "SESSION_REDIS_HOST")
MONGO_SETTINGS = ("DOC_STORE_CONFIG", "CONTENTSTORE", "MODULESTORE")
# The Django settings read here: a change of any of them (override_settings) derives again.
SETTINGS = ("DATABASES", "CACHES", "ALLOWED_HOSTS", "ELASTIC_SEARCH_CONFIG", "SESSION_REDIS",
            *BROKER_SETTINGS, *URL_SETTINGS, *HOST_SETTINGS, *MONGO_SETTINGS)
NETWORK_CACHES = ("memcached", "redis")  # in a cache BACKEND's path (not "locmem…"): others are local
_BUILT_IN = AddressPolicy()
Found = list[tuple[str, str]]  # (which setting, host)


def _host(text: str) -> str | None:
    """The host of a URL, ``host:port``, ``[v6]:port`` or bare name; None for a socket path or nonsense."""
    text = text.strip()
    if not text or text.startswith(("/", "unix:")):
        return None
    try:
        return urlsplit(text if "://" in text else f"//{text}").hostname
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


def _hosts(value: Any, separators: str = ";") -> list[str]:
    return [host for part in _parts(value, separators) if (host := _host(part))]


def _mongo_hosts(value: Any) -> list[str]:
    """Hosts in a MongoDB ``host``: names, ``host:port``, lists, ``mongodb://u:p@a:1,b:2/db?…`` URIs."""
    found = []
    for part in _parts(value, ";"):
        if "://" in part:  # several hosts after the credentials, before the path or options
            part = part.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0].split("?", 1)[0]
        found += _hosts(part, ",")
    return found


def _doc_stores(value: Any) -> Iterator[dict]:
    """Every ``DOC_STORE_CONFIG`` mapping in a modulestore or contentstore setting, however nested."""
    if isinstance(value, dict):
        if isinstance(value.get("DOC_STORE_CONFIG"), dict):
            yield value["DOC_STORE_CONFIG"]
        for item in value.values():
            yield from _doc_stores(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _doc_stores(item)


def _mongo(settings: Any) -> Found:
    doc_store = getattr(settings, "DOC_STORE_CONFIG", None)
    stores = [("DOC_STORE_CONFIG", doc_store)] if isinstance(doc_store, dict) else []
    stores += [(name, s) for name in ("CONTENTSTORE", "MODULESTORE")
               for s in _doc_stores(getattr(settings, name, None))]
    return [(name, host) for name, store in stores for host in _mongo_hosts(store.get("host"))]


def _search(settings: Any) -> Found:
    found = []
    for item in getattr(settings, "ELASTIC_SEARCH_CONFIG", None) or []:
        value = item.get("host") if isinstance(item, dict) else item
        found += [("ELASTIC_SEARCH_CONFIG", host) for host in _hosts(value, ";,")]
    return found


def _own_and_named(settings: Any) -> Found:
    """The LMS's and Studio's own hosts, mail, search and the other settings naming one host or URL."""
    found = [(name, host) for name in (*HOST_SETTINGS, *URL_SETTINGS)
             for host in _hosts(getattr(settings, name, None))]
    concrete = [h for h in getattr(settings, "ALLOWED_HOSTS", None) or [] if isinstance(h, str)
                and h not in ("*", "") and not h.startswith(".")]  # ".example.org": any subdomain
    found += [("ALLOWED_HOSTS", host) for host in _hosts(concrete)]
    session = getattr(settings, "SESSION_REDIS", None)
    if isinstance(session, dict):
        found += [("SESSION_REDIS", host) for key in ("host", "url") for host in _hosts(session.get(key))]
    return found


def service_hosts(settings: Any, gateway_url: str | None) -> Found:
    """(which setting, host) for every network service the settings name."""
    found: Found = []
    for alias, db in dict(getattr(settings, "DATABASES", None) or {}).items():
        host = str(db.get("HOST") or "") if isinstance(db, dict) else ""
        if host and not host.startswith("/"):  # "" and a path: a local socket
            found.append((f"DATABASES[{alias!r}]", host))
    for name in BROKER_SETTINGS:
        found += [(name, host) for host in _hosts(getattr(settings, name, None))]
    for alias, cache in dict(getattr(settings, "CACHES", None) or {}).items():
        backend = str(cache.get("BACKEND") or "").lower() if isinstance(cache, dict) else ""
        if any(kind in backend for kind in NETWORK_CACHES):
            found += [(f"CACHES[{alias!r}]", host) for host in _hosts(cache.get("LOCATION"), ";,")]
    found += _mongo(settings) + _search(settings) + _own_and_named(settings)
    if gateway_url and (host := _host(gateway_url)):
        found.append(("gateway_url", host))
    return list(dict.fromkeys(found))


def _once(level: int, seen: set[str] | None, message: str, *args: Any) -> None:
    """Log ``message``, unless ``seen`` (a refresher's memory) shows it was logged already."""
    text = message % args
    if seen is None or text not in seen:
        log.log(level, text)
        if seen is not None:
            seen.add(text)


def networks(hosts: Iterable[tuple[str, str]], resolver: Resolver = resolve,
             seen: set[str] | None = None) -> tuple[Network, ...]:
    """Each host's addresses as /32 (/128) networks, logging what was derived and what was not."""
    derived: dict[Network, list[str]] = {}
    for what, host in hosts:
        try:
            addresses = resolver(host)
        except AddressRefused:
            _once(logging.WARNING, seen, "labxblock: %s names %s, which does not resolve here; labs are not "
                  "kept from it until it does (looked up again every %d s)", what, host, REFRESH_SECONDS)
            continue
        for address in addresses:
            why = _BUILT_IN.refusal(address)
            if why is not None:
                _once(logging.INFO, seen, "labxblock: %s (%s) is refused to labs already: %s",
                      address, what, why)
                continue
            derived.setdefault(ipaddress.ip_network(address), []).append(what)
    if derived:
        _once(logging.INFO, seen, "labxblock: lab addresses refused as this site's own services: %s",
              ", ".join(f"{net.network_address} ({', '.join(whats)})" for net, whats in derived.items()))
    return tuple(derived)


def derive(settings: Any, gateway_url: str | None, resolver: Resolver = resolve,
           seen: set[str] | None = None) -> tuple[Network, ...]:
    """The networks to refuse for this site's services; () rather than an error if anything is odd."""
    try:
        return networks(service_hosts(settings, gateway_url), resolver, seen)
    except Exception:  # odd platform settings must not stop the platform's commands
        log.warning("labxblock: cannot derive this site's service addresses from its settings", exc_info=True)
        return ()


class ServiceNetworks:
    """``derive``'s answer, derived again once it is ``refresh_seconds`` old (see the module)."""

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._value: tuple[Network, ...] | None = None
        self._due = 0.0

    def get(self, settings: Any, gateway_url: str | None,
            resolver: Resolver = resolve) -> tuple[Network, ...]:
        """The networks, derived again if the last derivation is ``refresh_seconds`` old."""
        with self._lock:
            now = self.clock()
            if self._value is None or now >= self._due:
                self._value = derive(settings, gateway_url, resolver, self._seen)
                self._due = now + self.refresh_seconds
            return self._value

    def clear(self) -> None:
        """Forget the addresses and what was logged (the settings changed)."""
        with self._lock:
            self._value, self._seen = None, set()


__all__ = ["REFRESH_SECONDS", "SETTINGS", "ServiceNetworks", "derive", "networks", "service_hosts"]
