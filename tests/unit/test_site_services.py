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

# The rest of an Open edX site, as edx-platform's lms/envs/common.py and Tutor's rendered settings name it.
MONGO_STORE = {"db": "openedx", "host": "mongodb", "port": 27017, "user": None, "password": None}
OPEN_EDX = SimpleNamespace(
    DOC_STORE_CONFIG=MONGO_STORE,
    CONTENTSTORE={"ENGINE": "xmodule.contentstore.mongo.MongoContentStore",
                  "DOC_STORE_CONFIG": {**MONGO_STORE, "host": ["mongo-a", "mongo-b:27018"]}},
    MODULESTORE={"default": {"ENGINE": "xmodule.modulestore.mixed.MixedModuleStore", "OPTIONS": {
        "mappings": {}, "stores": [
            {"NAME": "split", "DOC_STORE_CONFIG": {"host": "mongodb://u:p@mongo-c:27017,10.0.1.4:27017/db?ssl=1"}},
            {"NAME": "draft", "DOC_STORE_CONFIG": MONGO_STORE},
        ]}}},
    ELASTIC_SEARCH_CONFIG=[{"use_ssl": False, "host": "elasticsearch", "port": 9200}, "https://es2:9200"],
    MEILISEARCH_URL="http://meilisearch:7700",
    EMAIL_HOST="smtp",
    LMS_BASE="lms.example.org", CMS_BASE="studio.lms.example.org:8001", SITE_NAME="lms.example.org",
    LMS_ROOT_URL="https://lms.example.org", LMS_INTERNAL_ROOT_URL="http://lms:8000",
    ALLOWED_HOSTS=["lms.example.org", "lms", ".example.org", "*", "[fd00::10]"],
    CELERY_BROKER_HOSTNAME="redis:6379",
    SESSION_REDIS={"host": "sessions", "port": 6379},
)


def open_edx_dns(host: str) -> list[str]:
    names = {"mongodb": ["10.0.1.1"], "mongo-a": ["10.0.1.2"], "mongo-b": ["10.0.1.3"],
             "mongo-c": ["10.0.1.5"], "elasticsearch": ["10.0.2.1"], "es2": ["10.0.2.2"],
             "meilisearch": ["10.0.2.3"], "smtp": ["10.0.3.1"], "lms.example.org": ["198.51.100.7"],
             "studio.lms.example.org": ["198.51.100.8"], "lms": ["10.0.4.1"], "redis": ["10.0.5.1"],
             "sessions": ["10.0.5.2"]}
    return names.get(host) or resolve(host)


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



def test_an_open_edx_sites_mongodb_search_mail_sessions_and_own_hosts_are_found() -> None:
    found = site_services.service_hosts(OPEN_EDX, None)
    assert found == [
        ("DOC_STORE_CONFIG", "mongodb"), ("CONTENTSTORE", "mongo-a"), ("CONTENTSTORE", "mongo-b"),
        ("MODULESTORE", "mongo-c"), ("MODULESTORE", "10.0.1.4"), ("MODULESTORE", "mongodb"),
        ("ELASTIC_SEARCH_CONFIG", "elasticsearch"), ("ELASTIC_SEARCH_CONFIG", "es2"),
        ("EMAIL_HOST", "smtp"), ("LMS_BASE", "lms.example.org"), ("CMS_BASE", "studio.lms.example.org"),
        ("SITE_NAME", "lms.example.org"), ("CELERY_BROKER_HOSTNAME", "redis"),
        ("MEILISEARCH_URL", "meilisearch"), ("LMS_ROOT_URL", "lms.example.org"),
        ("LMS_INTERNAL_ROOT_URL", "lms"),
        ("ALLOWED_HOSTS", "lms.example.org"), ("ALLOWED_HOSTS", "lms"), ("ALLOWED_HOSTS", "fd00::10"),
        ("SESSION_REDIS", "sessions"),
    ]
    refused = {str(n) for n in site_services.derive(OPEN_EDX, None, resolver=open_edx_dns)}
    assert refused == {"10.0.1.1/32", "10.0.1.2/32", "10.0.1.3/32", "10.0.1.5/32", "10.0.1.4/32",
                       "10.0.2.1/32", "10.0.2.2/32", "10.0.2.3/32", "10.0.3.1/32", "198.51.100.7/32",
                       "198.51.100.8/32", "10.0.4.1/32", "10.0.5.1/32", "10.0.5.2/32", "fd00::10/128"}


def test_names_are_resolved_again_so_a_late_or_moved_service_is_refused_and_each_finding_logged_once(
        caplog) -> None:
    caplog.set_level(logging.INFO, logger="labxblock")
    dns: dict[str, list[str]] = {}  # the database's container is not up yet

    def resolver(host: str) -> list[str]:
        return dns.get(host) or resolve(host)

    now = [0.0]
    services = site_services.ServiceNetworks(refresh_seconds=300, clock=lambda: now[0])
    settings = SimpleNamespace(DATABASES={"default": {"HOST": "mysql"}})
    assert services.get(settings, None, resolver) == ()
    dns["mysql"] = ["10.0.0.5"]
    now[0] = 299
    assert services.get(settings, None, resolver) == ()  # not looked up again yet
    now[0] = 300
    assert [str(n) for n in services.get(settings, None, resolver)] == ["10.0.0.5/32"]  # up now: refused
    dns["mysql"] = ["10.0.0.9"]  # the container restarted with another address
    now[0] = 600
    assert [str(n) for n in services.get(settings, None, resolver)] == ["10.0.0.9/32"]
    now[0] = 900
    services.get(settings, None, resolver)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("mysql, which does not resolve" in line for line in lines) == 1
    assert sum(line.endswith("10.0.0.5 (DATABASES['default'])") for line in lines) == 1
    assert sum(line.endswith("10.0.0.9 (DATABASES['default'])") for line in lines) == 1
