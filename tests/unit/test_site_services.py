"""The site's own service addresses, found in Django's settings and refused as lab addresses."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from labxblock import site_services
from labxblock.addresses import AddressPolicy, parse_networks, resolve

# An edx-platform-like site: MySQL, a Redis broker (with failover), memcached and Redis caches.
PLATFORM = SimpleNamespace(
    DATABASES={
        "default": {"ENGINE": "django.db.backends.mysql", "HOST": "mysql.internal", "PORT": "3306"},
        "read_replica": {"ENGINE": "django.db.backends.mysql", "HOST": "10.0.0.6"},
        "local": {"ENGINE": "django.db.backends.mysql", "HOST": ""},  # a local socket
        "socket": {"ENGINE": "django.db.backends.postgresql", "HOST": "/var/run/postgresql"},
    },
    BROKER_URL="redis://:s3cret-broker-password@redis.internal:6379/0;redis://10.0.0.8:6379/0",
    CELERY_RESULT_BACKEND=None,
    CACHES={
        "default": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                    "LOCATION": ["10.0.0.9:11211", "[fd00::9]:11211"]},
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                  "LOCATION": "redis://10.0.0.8:6379/1"},
        "unix": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                 "LOCATION": "unix:/tmp/memcached.sock"},
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "not-a-host"},
        "files": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": "/var/tmp/c"},
    },
)
DNS = {"mysql.internal": ["10.0.0.5"], "redis.internal": ["10.0.0.7", "127.0.0.1"],
       "gw.example.org": ["203.0.113.4"]}


def fake_dns(host: str) -> list[str]:
    """A resolver with this site's names; literal addresses resolve to themselves, like the real one."""
    if host in DNS:
        return DNS[host]
    return resolve(host)  # literals only here: unknown names raise AddressRefused


def test_every_network_service_in_the_settings_is_found_and_local_ones_are_not() -> None:
    assert site_services.service_hosts(PLATFORM, "wss://gw.example.org/") == [
        ("DATABASES['default']", "mysql.internal"),
        ("DATABASES['read_replica']", "10.0.0.6"),
        ("BROKER_URL", "redis.internal"),
        ("BROKER_URL", "10.0.0.8"),
        ("CACHES['default']", "10.0.0.9"),
        ("CACHES['default']", "fd00::9"),
        ("CACHES['redis']", "10.0.0.8"),
        ("gateway_url", "gw.example.org"),
    ]


def test_services_are_refused_inside_the_operators_wider_network(caplog) -> None:
    caplog.set_level(logging.INFO, logger="labxblock")
    refused = site_services.derive(PLATFORM, "wss://gw.example.org/", resolver=fake_dns)
    assert [str(n) for n in refused] == [
        "10.0.0.5/32", "10.0.0.6/32", "10.0.0.7/32", "10.0.0.8/32", "10.0.0.9/32", "fd00::9/128",
        "203.0.113.4/32",
    ]
    policy = AddressPolicy(allowed=parse_networks(["10.0.0.0/8"], what="a"), refused=refused)
    assert policy.refusal("10.0.0.5") == "an address of this site's own services"
    assert policy.refusal("10.0.0.50") is None
    # What was derived is logged, by setting name and address; the broker's password never.
    assert "10.0.0.5 (DATABASES['default'])" in caplog.text
    assert "10.0.0.8 (BROKER_URL, CACHES['redis'])" in caplog.text
    assert "s3cret-broker-password" not in caplog.text
    # Loopback is refused by a built-in rule already: not added, so an explicit loopback allowance holds.
    assert "127.0.0.1 (BROKER_URL) is refused to labs already: loopback" in caplog.text


def test_a_name_that_does_not_resolve_is_logged_and_skipped_never_raised(caplog) -> None:
    settings = SimpleNamespace(DATABASES={"default": {"HOST": "db.no-such-host.invalid"}})
    assert site_services.derive(settings, None) == ()
    assert "DATABASES['default'] names db.no-such-host.invalid, which does not resolve" in caplog.text


def test_odd_settings_give_no_refusals_and_a_warning_not_an_error(caplog) -> None:
    def broken(host: str) -> list[str]:
        raise RuntimeError("resolver exploded")

    assert site_services.derive(PLATFORM, None, resolver=broken) == ()
    assert "cannot derive this site's service addresses" in caplog.text
    odd = SimpleNamespace(DATABASES=["not", "a", "mapping"], CACHES={"x": "y"}, BROKER_URL=42)
    assert site_services.derive(odd, "not a url") == ()

