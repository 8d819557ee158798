"""``XBLOCK_SETTINGS["labxblock"]`` → one validated, frozen :class:`LabSettings`.

Nothing else in the project reads ``django.conf.settings`` for our settings.
``load_settings`` is pure (a mapping in, settings or :class:`LabSettingsError` out);
``get_settings`` reads Django's settings once and caches the result. Every
problem raises :class:`LabSettingsError` naming the full key and what is
expected; values of secret keys are never echoed.

A site whose settings are missing or wrong still runs every platform command:
the system check reports a warning (``labxblock.W001``), and the first operation
that needs the settings (:func:`require_settings`) fails with that same message.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from labxblock import lifecycle, site_services
from labxblock.addresses import EVERYWHERE, Network, parse_networks
from labxblock.secret import DEFAULT_SECRET_OUTPUTS, PUBLIC_OUTPUTS, Secret, is_secret_name

log = logging.getLogger(__name__)

ROOT = "labxblock"
TERMINAL_MODES = ("gateway", "guacamole-json", "console")
INSTALL_ID_RE = re.compile(r"[a-z0-9-]{1,20}")
HEX32_RE = re.compile(r"[0-9a-fA-F]{32}")
CURRENCY_RE = re.compile(r"[A-Z]{3}")


# How long each transitional state may last before the reconciler re-reads the
# cloud and retries or fails the lab: the lifecycle's defaults, keyed by State value.
DEFAULT_STATE_DEADLINES: Mapping[str, int] = MappingProxyType(
    {str(state): int(seconds) for state, seconds in lifecycle.DEFAULT_DEADLINES.items()}
)


class LabSettingsError(ImproperlyConfigured):
    """A missing or invalid value in ``XBLOCK_SETTINGS["labxblock"]``."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class ProviderSettings:
    """One configured cloud: ``XBLOCK_SETTINGS["labxblock"]["providers"][name]``."""

    name: str = field(metadata=_help("The provider's name (its key under `providers`)."))
    type: str = field(metadata=_help("Installed provider type (entry point in `labxblock.providers`)."))
    capacity: int | None = field(
        default=None, metadata=_help("Most live labs on this provider; null means unlimited.")
    )
    actions_per_minute: int = field(
        default=120, metadata=_help("Rate limit for suspend/resume/delete calls to this provider.")
    )
    allowed_networks: tuple[Network, ...] = field(
        default=EVERYWHERE,
        metadata=_help("Networks (CIDRs) lab addresses may be in; loopback, link-local… only if listed."),
    )
    price_per_hour: Decimal | None = field(
        default=None, metadata=_help("What one lab-hour here costs the site (usage reports); null: unpriced.")
    )
    options: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}),
        repr=False,  # holds cloud credentials
        metadata=_help("Every other key: provider-specific, checked by the provider class."),
    )


@dataclass(frozen=True)
class QueueSettings:
    """Celery queues of labxblock's tasks: ``XBLOCK_SETTINGS["labxblock"]["queues"]``."""

    calls: str = field(
        default="labxblock",
        metadata=_help("Cloud calls: perform_job, advance_lab, delete_orphan (one create, suspend, resume "
                       "or delete each)."),
    )
    ticks: str = field(
        default="labxblock.ticks", metadata=_help("Beat's ticks: reconcile, suspend_idle, reap.")
    )
    checks: str = field(
        default="labxblock.checks",
        metadata=_help("Scripts in labs: run_checks (progress checks), run_hooks (lifecycle scripts)."),
    )
    observe: str = field(
        default="labxblock.observe",
        metadata=_help("Watching the cloud: observe, audit (its lists and reads) and the readiness probes "
                       "(perform_job's probes): short tasks that must not wait behind a burst of calls."),
    )


@dataclass(frozen=True)
class LabSettings:
    """Validated site settings for labxblock; build with :func:`load_settings`."""

    install_id: str = field(
        metadata=_help("Short slug [a-z0-9-]{1,20} naming this site in stack names and cloud tags.")
    )
    providers: Mapping[str, ProviderSettings] = field(
        metadata=_help("Clouds by name; must contain `default`. Each has `type` plus its own keys.")
    )
    secret_keys: tuple[str, ...] = field(
        repr=False, metadata=_help("Fernet keys for lab secrets at rest; the first encrypts, all decrypt.")
    )
    ticket_keys: tuple[str, ...] = field(
        repr=False, metadata=_help("Fernet keys for terminal tickets (shared with the gateway); first signs.")
    )
    terminal_mode: str = field(
        default="gateway", metadata=_help("How labs are shown: gateway, guacamole-json or console.")
    )
    gateway_url: str | None = field(
        default=None, metadata=_help("Public http(s)/ws(s) URL of the terminal gateway (gateway, console).")
    )
    guacamole_url: str | None = field(
        default=None, metadata=_help("Public http(s) URL of the Guacamole web app (guacamole-json).")
    )
    guacamole_json_secret_key: str | None = field(
        default=None,
        repr=False,
        metadata=_help("Guacamole JSON auth secret: 32 hex digits (guacamole-json)."),
    )
    currency: str = field(
        default="USD", metadata=_help("ISO 4217 code of the providers' price_per_hour, shown with costs.")
    )
    ticket_ttl_seconds: int = field(
        default=60, metadata=_help("How long a terminal ticket may take to open.")
    )
    launch_timeout: int = field(
        default=2400, metadata=_help("Seconds from request to ready before a launch fails visibly.")
    )
    suspend_timeout: int = field(
        default=120, metadata=_help("Idle seconds (no keepalive) before a lab is suspended.")
    )
    delete_timeout: int = field(
        default=14 * 86400, metadata=_help("Seconds of disuse before a lab is deleted (default 14 days).")
    )
    time_budget_seconds: int | None = field(
        default=None,
        metadata=_help("Up-time each learner's lab may have in its course run, unless its blocks set a "
                       "budget (time_budget_hours); null: no budget."),
    )
    keepalive_interval_seconds: int = field(
        default=30, metadata=_help("How often an open, active lab page sends a keepalive.")
    )
    leave_grace_seconds: int = field(
        default=30,
        metadata=_help("Seconds after the learner leaves the page (hidden or closed) before the lab is "
                       "suspended, unless a keepalive from any tab comes first."),
    )
    launch_ahead_per_hour: int = field(
        default=3,
        metadata=_help("Labs a learner's hidden blocks may start ahead of them per hour (only labs they "
                       "have not got); 0: hidden blocks start none."),
    )
    reconcile_interval_seconds: int = field(
        default=1,
        metadata=_help("Period of the reconciler, and of the observation of a provider with labs in flight."),
    )
    suspend_idle_interval_seconds: int = field(
        default=15, metadata=_help("Period of the task that marks idle labs for suspension.")
    )
    reap_interval_seconds: int = field(
        default=300,
        metadata=_help("Period of the reaper (disused labs) and of the audit (full list: drift, orphans)."),
    )
    orphan_grace_seconds: int = field(
        default=3600, metadata=_help("Age an orphan stack (our tag, no live row) must reach before deletion.")
    )
    retry_backoff_seconds: int = field(
        default=10, metadata=_help("First delay before retrying a failed cloud call; doubles each attempt.")
    )
    retry_backoff_max_seconds: int = field(default=600, metadata=_help("Longest delay between retries."))
    max_attempts: int = field(
        default=5, metadata=_help("Cloud call attempts per transition before a lab is failed visibly.")
    )
    acceptance_window_seconds: int = field(
        default=45,
        metadata=_help("Seconds a cloud call may go unseen (no answer from its worker, no sign in the "
                       "cloud) before it is issued again: how soon lost work is noticed."),
    )
    queues: QueueSettings = field(
        default_factory=QueueSettings,
        metadata=_help("Celery queue of each kind of task (keys calls, ticks, checks, observe); every send "
                       "names it."),
    )
    secret_outputs: tuple[str, ...] = field(
        default=DEFAULT_SECRET_OUTPUTS,
        metadata=_help("Template outputs (names or fnmatch patterns) stored encrypted and never shown."),
    )
    # Moving from stackamole/hastexo (labxblock.legacy).
    serve_legacy_block_types: bool = field(
        default=False,
        metadata=_help("Run stackamole and hastexo components (their old XBlock names) as labxblock labs."),
    )
    studio_test_labs: bool = field(
        default=True, metadata=_help("Whether authors may launch test labs from Studio (\"Test this lab\").")
    )
    studio_test_lab_timeout: int = field(
        default=1800, metadata=_help("Seconds after its launch a Studio test lab is deleted, if not stopped.")
    )
    studio_test_labs_per_course: int | None = field(
        default=5, metadata=_help("Most live Studio test labs per course run; null means no limit.")
    )
    state_deadline_seconds: Mapping[str, int] = field(
        default_factory=lambda: DEFAULT_STATE_DEADLINES,
        metadata=_help(
            "Seconds each transitional state may last; keys: " + ", ".join(DEFAULT_STATE_DEADLINES)
        ),
    )

    def is_secret_output(self, name: str) -> bool:
        """Is the template output ``name`` a secret (encrypted at rest, never shown)?"""
        return is_secret_name(name, self.secret_outputs)

    def deadline_seconds(self, state: str) -> int | None:
        """How long ``state`` may last, or None for a resting state."""
        return self.state_deadline_seconds.get(str(state))

    @functools.cached_property
    def policy(self) -> lifecycle.Policy:
        """The lifecycle's tunables, from these settings (made once: the pass asks for every lab)."""
        return lifecycle.Policy(
            deadline_seconds=self.state_deadline_seconds,
            max_attempts=self.max_attempts,
            retry_backoff_seconds=self.retry_backoff_seconds,
            retry_backoff_max_seconds=self.retry_backoff_max_seconds,
            acceptance_window_seconds=self.acceptance_window_seconds,
        )


def settings_help() -> list[tuple[str, str, str]]:
    """(key, default, help) per setting, for README generation and checks."""
    rows = []
    for cls, prefix in (
        (LabSettings, ROOT), (QueueSettings, f"{ROOT}.queues"), (ProviderSettings, f"{ROOT}.providers.<name>")
    ):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                made = f.default_factory()
                default = repr(dataclasses.asdict(made) if dataclasses.is_dataclass(made) else dict(made))
            else:
                default = "required"
            rows.append((f"{prefix}.{f.name}", default, f.metadata["help"]))
    return rows


# --- validation helpers: each takes the full key for its error message ---


def _fail(
    key: str, expected: str, value: Any = dataclasses.MISSING, *, secret: bool = False
) -> LabSettingsError:
    if value is dataclasses.MISSING:
        return LabSettingsError(f"{key}: expected {expected}, but it is missing")
    if secret:
        return LabSettingsError(f"{key}: expected {expected}")
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return LabSettingsError(f"{key}: expected {expected}, got {shown}")


def _int(key: str, value: Any, *, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "≥ 0" if minimum == 0 else f"≥ {minimum}"
        raise _fail(key, f"an integer {bound}" + (" or null" if allow_none else ""), value)
    return value


def _seconds(key: str, value: Any) -> int:
    return _int(key, value, minimum=1)  # type: ignore[return-value]


def _url(key: str, value: Any, schemes: tuple[str, ...]) -> str:
    what = "an http(s) or ws(s) URL" if "ws" in schemes else "an http(s) URL"
    if not isinstance(value, str):
        raise _fail(key, what, value)
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise _fail(key, what, value)
    return value


def _fernet_keys(key: str, value: Any) -> tuple[Secret, ...]:
    what = "a non-empty list of Fernet keys"
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise _fail(key, what, value, secret=True)
    for i, k in enumerate(value):
        try:
            Fernet(k)
        except (ValueError, TypeError):
            raise LabSettingsError(
                f"{key}[{i}]: is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from None
    return tuple(Secret(k) for k in value)  # keys passed around stay hidden in error reports


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(key, "a mapping", value)
    return value


def _provider(key: str, name: str, raw: Any, load_class: Callable[[str], type]) -> ProviderSettings:
    raw = dict(_mapping(key, raw))
    type_name = raw.pop("type", dataclasses.MISSING)
    if not isinstance(type_name, str) or not type_name:
        raise _fail(f"{key}.type", "a provider type name", type_name)
    try:
        provider_class = load_class(type_name)
    except KeyError as e:
        raise LabSettingsError(f"{key}.type: expected an installed provider type; {e.args[0]}") from None
    except ImportError as e:  # the entry point exists but its module is broken
        raise LabSettingsError(f"{key}.type: provider type {type_name!r} failed to import: {e}") from None
    capacity = _int(f"{key}.capacity", raw.pop("capacity", None), minimum=0, allow_none=True)
    actions = _int(f"{key}.actions_per_minute", raw.pop("actions_per_minute", 120), minimum=1)
    allowed = _networks(f"{key}.allowed_networks", raw.pop("allowed_networks", dataclasses.MISSING))
    price = _price(f"{key}.price_per_hour", raw.pop("price_per_hour", None))
    options = MappingProxyType(raw)
    problems = provider_class.check_config(options)
    if problems:
        # Report every problem at once; expectations never carry values.
        raise LabSettingsError("; ".join(f"{key}.{sub}: expected {what}" for sub, what in problems))
    return ProviderSettings(
        name=name, type=type_name, capacity=capacity, actions_per_minute=actions,
        allowed_networks=allowed, price_per_hour=price, options=options,
    )


def _networks(key: str, raw: Any) -> tuple[Network, ...]:
    if raw is dataclasses.MISSING:
        return EVERYWHERE
    if not isinstance(raw, list | tuple) or not raw:
        raise _fail(key, "a non-empty list of networks such as '10.0.0.0/8'", raw)
    try:
        return parse_networks(raw, what=key)
    except ValueError as exc:
        raise LabSettingsError(str(exc)) from None


def _secret_outputs(key: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        raise _fail(key, "a list of output names or patterns such as '*_password'", raw)
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            raise _fail(f"{key}[{i}]", "an output name or pattern such as '*_password'", name)
        if name in PUBLIC_OUTPUTS:
            raise LabSettingsError(
                f"{key}[{i}]: {name!r} is a public output of the template contract (read as plain text "
                "by the probe, the checks and the terminal), so it cannot be secret"
            )
    return tuple(raw)


def _price(key: str, value: Any) -> Decimal | None:
    """A price as a Decimal (money is not a float); a string such as "0.12" keeps its digits."""
    if value is None:
        return None
    what = "a number ≥ 0 (a price per lab-hour) or null"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail(key, what, value)
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise _fail(key, what, value) from None
    if not price.is_finite() or price < 0:
        raise _fail(key, what, value)
    return price


def _deadlines(key: str, raw: Any) -> Mapping[str, int]:
    merged = dict(DEFAULT_STATE_DEADLINES)
    for state, value in _mapping(key, raw).items():
        if state not in merged:
            raise LabSettingsError(f"{key}.{state}: unknown state; expected one of " + ", ".join(merged))
        merged[state] = _seconds(f"{key}.{state}", value)
    return MappingProxyType(merged)


def _queues(key: str, raw: Any) -> QueueSettings:
    kinds = sorted(f.name for f in dataclasses.fields(QueueSettings))
    values = {}
    for kind, name in _mapping(key, raw).items():
        if kind not in kinds:
            raise LabSettingsError(f"{key}.{kind}: unknown queue; expected one of " + ", ".join(kinds))
        if not isinstance(name, str) or not name.strip():
            raise _fail(f"{key}.{kind}", "a non-empty queue name", name)
        values[kind] = name
    return QueueSettings(**values)


def _studio_test_labs(raw: dict[str, Any]) -> dict[str, Any]:
    """``studio_test_labs`` (on/off) and ``studio_test_labs_per_course`` (the timeout is a seconds field)."""
    out: dict[str, Any] = {}
    if "studio_test_labs" in raw:
        enabled = raw.pop("studio_test_labs")
        if not isinstance(enabled, bool):
            raise _fail(f"{ROOT}.studio_test_labs", "true or false", enabled)
        out["studio_test_labs"] = enabled
    if "studio_test_labs_per_course" in raw:
        key = f"{ROOT}.studio_test_labs_per_course"
        out["studio_test_labs_per_course"] = _int(key, raw.pop("studio_test_labs_per_course"), minimum=1,
                                                  allow_none=True)
    return out


def _terminal(raw: dict[str, Any]) -> dict[str, Any]:
    mode = raw.pop("terminal_mode", "gateway")
    if mode not in TERMINAL_MODES:
        raise _fail(f"{ROOT}.terminal_mode", "one of " + ", ".join(TERMINAL_MODES), mode)
    out: dict[str, Any] = {"terminal_mode": mode}
    gateway_url = raw.pop("gateway_url", None)
    guac_url = raw.pop("guacamole_url", None)
    guac_key = raw.pop("guacamole_json_secret_key", None)
    if gateway_url is not None or mode in ("gateway", "console"):
        what = f"an http(s) or ws(s) URL (required when terminal_mode is {mode!r})"
        if gateway_url is None:
            raise _fail(f"{ROOT}.gateway_url", what)
        out["gateway_url"] = _url(f"{ROOT}.gateway_url", gateway_url, ("http", "https", "ws", "wss"))
    if guac_url is not None or mode == "guacamole-json":
        if guac_url is None:
            raise _fail(f"{ROOT}.guacamole_url", "an http(s) URL (required for guacamole-json)")
        out["guacamole_url"] = _url(f"{ROOT}.guacamole_url", guac_url, ("http", "https"))
    if guac_key is not None or mode == "guacamole-json":
        what = "32 hex digits (required for guacamole-json)"
        if guac_key is None:
            raise _fail(f"{ROOT}.guacamole_json_secret_key", what)
        if not isinstance(guac_key, str) or not HEX32_RE.fullmatch(guac_key):
            raise _fail(f"{ROOT}.guacamole_json_secret_key", what, guac_key, secret=True)
        out["guacamole_json_secret_key"] = Secret(guac_key.lower())
    return out


_SECONDS_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(LabSettings)
    if f.name.endswith(("_seconds", "_timeout"))
    and f.name not in ("state_deadline_seconds", "time_budget_seconds")  # a mapping; null allowed
)


def load_settings(raw: Mapping[str, Any], *, load_class: Callable[[str], type] | None = None) -> LabSettings:
    """Validate ``raw`` (the ``labxblock`` dict) into :class:`LabSettings`, or raise LabSettingsError."""
    if load_class is None:
        from labxblock.providers import load_provider_class as load_class
    raw = dict(_mapping(ROOT, raw))
    values: dict[str, Any] = {}

    install_id = raw.pop("install_id", dataclasses.MISSING)
    if not isinstance(install_id, str) or not INSTALL_ID_RE.fullmatch(install_id):
        raise _fail(f"{ROOT}.install_id", "a slug of 1-20 characters a-z, 0-9 and -", install_id)
    values["install_id"] = install_id

    providers = _mapping(f"{ROOT}.providers", raw.pop("providers", {}))
    if "default" not in providers:
        raise _fail(f"{ROOT}.providers.default", "a provider named 'default'")
    values["providers"] = MappingProxyType(
        {
            str(name): _provider(f"{ROOT}.providers.{name}", str(name), conf, load_class)
            for name, conf in providers.items()
        }
    )
    for name in ("secret_keys", "ticket_keys"):
        values[name] = _fernet_keys(f"{ROOT}.{name}", raw.pop(name, dataclasses.MISSING))

    values.update(_terminal(raw))
    if "currency" in raw:
        currency = raw.pop("currency")
        if not isinstance(currency, str) or not CURRENCY_RE.fullmatch(currency):
            raise _fail(f"{ROOT}.currency", "a three-letter ISO 4217 code such as EUR", currency)
        values["currency"] = currency
    for name in _SECONDS_FIELDS:
        if name in raw:
            values[name] = _seconds(f"{ROOT}.{name}", raw.pop(name))
    if values.get("ticket_ttl_seconds", 60) > 60:
        raise _fail(f"{ROOT}.ticket_ttl_seconds", "at most 60 seconds", values["ticket_ttl_seconds"])
    if "time_budget_seconds" in raw:
        key = f"{ROOT}.time_budget_seconds"
        values["time_budget_seconds"] = _int(key, raw.pop("time_budget_seconds"), minimum=1, allow_none=True)
    if "launch_ahead_per_hour" in raw:
        key = f"{ROOT}.launch_ahead_per_hour"
        values["launch_ahead_per_hour"] = _int(key, raw.pop("launch_ahead_per_hour"), minimum=0)
    if "max_attempts" in raw:
        values["max_attempts"] = _int(f"{ROOT}.max_attempts", raw.pop("max_attempts"), minimum=1)
    if "queues" in raw:
        values["queues"] = _queues(f"{ROOT}.queues", raw.pop("queues"))
    if "secret_outputs" in raw:
        values["secret_outputs"] = _secret_outputs(f"{ROOT}.secret_outputs", raw.pop("secret_outputs"))
    values.update(_studio_test_labs(raw))
    if "state_deadline_seconds" in raw:
        key = f"{ROOT}.state_deadline_seconds"
        values["state_deadline_seconds"] = _deadlines(key, raw.pop("state_deadline_seconds"))

    # Moving from stackamole/hastexo (labxblock.legacy).
    if "serve_legacy_block_types" in raw:
        value = raw.pop("serve_legacy_block_types")
        if not isinstance(value, bool):
            raise _fail(f"{ROOT}.serve_legacy_block_types", "true or false", value)
        values["serve_legacy_block_types"] = value

    if raw:  # typos must not pass silently; name keys, not values
        unknown = sorted(str(k) for k in raw)
        raise LabSettingsError(
            f"{ROOT}.{unknown[0]}: unknown setting"
            + (f" (also unknown: {', '.join(unknown[1:])})" if unknown[1:] else "")
        )
    return LabSettings(**values)


# A failed read is remembered this long, so a site without settings does not parse them again for
# every keepalive and status poll; the next read after it notices a fix.
FAILURE_MEMORY_SECONDS = 30.0
_clock = time.monotonic  # tests move it
_failure: dict[str, Any] = {}  # "until" (clock) and "message" of the last failed read
_logged: set[str] = set()  # settings problems the log has named (once each per process)


def get_settings() -> LabSettings:
    """The site's settings, validated once per process; LabSettingsError if missing or wrong."""
    if _failure and _clock() < _failure["until"]:
        raise LabSettingsError(_failure["message"])
    try:
        return _read_settings()
    except LabSettingsError as exc:
        _failure.update(until=_clock() + FAILURE_MEMORY_SECONDS, message=str(exc))
        raise


@functools.cache
def _read_settings() -> LabSettings:
    from django.conf import settings

    xblock_settings = getattr(settings, "XBLOCK_SETTINGS", None)
    if xblock_settings is None:
        xblock_settings = {}
    if not isinstance(xblock_settings, Mapping):
        raise LabSettingsError(f"XBLOCK_SETTINGS: expected a mapping, got {type(xblock_settings).__name__}")
    if ROOT not in xblock_settings:
        raise LabSettingsError(
            f'XBLOCK_SETTINGS["{ROOT}"]: expected a mapping with at least install_id, providers, '
            "secret_keys and ticket_keys, but it is missing"
        )
    return load_settings(xblock_settings[ROOT])


_SERVICES = site_services.ServiceNetworks()


def site_service_networks() -> tuple[Network, ...]:
    """This site's own service addresses (databases, broker, caches, search, mail, the LMS…), refused
    as lab addresses.

    Derived from Django's settings and resolved again every few minutes (see ``site_services``);
    a lookup that fails is logged, never raised.
    """
    from django.conf import settings

    return _SERVICES.get(settings, get_settings().gateway_url)


def reset_settings_cache() -> None:
    """Forget the cached settings, a failure to read them, and which problems were logged
    (tests; ``override_settings`` does this itself)."""
    _read_settings.cache_clear()
    _failure.clear()
    _logged.clear()
    _SERVICES.clear()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "XBLOCK_SETTINGS":
        reset_settings_cache()
    elif setting in site_services.SETTINGS:
        _SERVICES.clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="labxblock.conf.reset")


def require_settings(operation: str) -> LabSettings:
    """The settings, for an operation that cannot run without them.

    If they are missing or wrong, the operator reads why in the log (an ERROR naming the
    key, once per process for each problem, not for every keepalive) and the caller gets
    the LabSettingsError to answer its own user with.
    """
    try:
        return get_settings()
    except LabSettingsError as exc:
        if str(exc) not in _logged:
            _logged.add(str(exc))
            log.error("labxblock: labs are not configured on this site, %s refused (and every operation "
                      "until it is fixed; logged once): %s", operation, exc)
        raise


@checks.register(ROOT)
def settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django system check: a warning, so every platform command (migrate, collectstatic,
    the translation commands of an image build) still runs on a site not yet configured."""
    reset_settings_cache()
    try:
        get_settings()
    except LabSettingsError as e:
        hint = ("Until it is fixed learners are told labs are not configured on this site and no tick "
                "runs; see labxblock's README, section Settings.")
        return [checks.Warning(str(e), hint=hint, id="labxblock.W001")]
    return []
