"""The OpenStack provider: Heat stacks through keystoneauth1 and python-heatclient.

Every method makes one API call (``after_resume`` a few) and returns; nothing here
polls or sleeps. Every cloud error leaves as one of the typed errors of
:mod:`labxblock.providers.base`. Heat's status words are mapped in
:mod:`.openstack_status`; configuration rules live in :mod:`.openstack_config`.

``StackRef.data`` is ``{"id": <heat stack id>}``: with it every call addresses
``stacks/<name>/<id>`` directly instead of paying for Heat's name lookup redirect.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests
import yaml

from labxblock.lifecycle import State
from labxblock.providers import openstack_config as conf
from labxblock.providers import openstack_deadline as deadline
from labxblock.providers import openstack_validate as validation
from labxblock.providers.base import (
    CheckReport,
    NoAnswer,
    NotFound,
    PermanentError,
    Provider,
    ProviderError,
    QuotaExceeded,
    StackInfo,
    StackRef,
    StackSpec,
    TemplateProblem,
    TemporaryError,
)
from labxblock.providers.openstack_status import heat_state, outputs_are_final

DEFAULT_DELAY = 5.0  # seconds before retrying when the cloud gives no Retry-After
SERVER_TYPE = "OS::Nova::Server"
# What a check reports of Nova's absolute limits: (label, used, maximum).
QUOTA = (("instances", "totalInstancesUsed", "maxTotalInstances"),
         ("cores", "totalCoresUsed", "maxTotalCores"), ("RAM MiB", "totalRAMUsed", "maxTotalRAMSize"))
# Stacks per list request. Heat takes ~15-30 ms a stack to list, so a page stays well inside
# the read timeout however many stacks there are (2,000 in one request take ~50 s).
PAGE = 100


# --- pure request builders and response readers -----------------------------------


def create_body(spec: StackSpec, create_timeout: float) -> dict[str, Any]:
    """The body of Heat's ``POST /stacks`` for ``spec``.

    The template goes as text (Heat parses it); the environment is parsed here
    because the API takes it as an object. ``disable_rollback`` keeps a failed
    stack in CREATE_FAILED so its reason is visible instead of rolled away.
    """
    return {
        "stack_name": spec.name,
        "template": spec.template,
        "environment": environment_mapping(spec.environment),
        "files": {},
        "parameters": dict(spec.parameters),
        "tags": ",".join(spec.tags),
        "disable_rollback": True,
        "timeout_mins": max(1, math.ceil(create_timeout / 60)),
    }


def environment_mapping(text: str | None) -> dict[str, Any]:
    """An environment file's text as the object Heat's API takes; PermanentError if it is not one."""
    try:
        environment = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as exc:
        raise PermanentError(f"the stack environment is not valid YAML: {exc}") from None
    if not isinstance(environment or {}, dict):
        raise PermanentError("the stack environment must be a YAML mapping")
    return environment or {}


def stack_path(ref: StackRef) -> str:
    """``name/id`` when the id is known (no lookup redirect), else the name."""
    stack_id = ref.data.get("id")
    return f"{ref.name}/{stack_id}" if stack_id else ref.name


def _tags(value: Any) -> tuple[str, ...]:
    # Heat answers a list; some releases answered a comma-separated string.
    if isinstance(value, str):
        return tuple(tag for tag in value.split(",") if tag)
    return tuple(value or ())


def stack_info(stack: Mapping[str, Any]) -> StackInfo:
    """A Heat stack document (from show or list) in our own words.

    Outputs are kept only for a complete, usable stack: before that Heat reports
    them unresolved or with errors.
    """
    raw = stack.get("stack_status") or ""
    reason = stack.get("stack_status_reason") or ""
    outputs: dict[str, Any] = {}
    if outputs_are_final(raw):
        for item in stack.get("outputs") or ():
            if "output_error" not in item:
                outputs[item["output_key"]] = item.get("output_value")
    return StackInfo(
        ref=StackRef(stack.get("stack_name", ""), {"id": stack.get("id", "")}),
        state=heat_state(raw, reason),
        raw_status=raw,
        reason=reason,
        outputs=outputs,
        tags=_tags(stack.get("tags")),
        created_at=heat_time(stack.get("creation_time")),
    )


def heat_time(value: Any) -> datetime | None:
    """Heat's timestamps (ISO 8601, UTC, with or without a zone) as aware datetimes."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def truthy(value: Any) -> bool:
    """A template output meant as a boolean (Heat outputs arrive as whatever the author wrote)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


# --- errors --------------------------------------------------------------------------


def _status_and_message(exc: Exception) -> tuple[int | None, str]:
    """The HTTP status and the cloud's own explanation carried by a client exception."""
    status = getattr(exc, "http_status", None) or getattr(exc, "code", None)
    status = status if isinstance(status, int) else None
    error = getattr(exc, "error", None)  # heatclient: the parsed JSON error body
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        detail = error["error"]
        message = str(detail.get("message") or "")
        if detail.get("type"):
            message = f"{detail['type']}: {message}"
        return status, message.strip()
    message = getattr(exc, "message", None) or getattr(exc, "details", None) or str(exc)
    return status, str(message).strip()


def cloud_error(exc: Exception, doing: str, retry_after: float | None = None) -> ProviderError:
    """Map an exception from keystoneauth1, heatclient or novaclient to a typed error.

    ``doing`` names the call ("stack create"); ``retry_after`` is the seconds the
    cloud asked us to wait, if it said. Messages carry the cloud's explanation and
    never a credential.
    """
    from keystoneauth1 import exceptions as ks  # deferred: heavy imports, keeps module import cheap

    if isinstance(exc, ProviderError):
        return exc
    delay = retry_after if retry_after and retry_after > 0 else DEFAULT_DELAY
    if isinstance(exc, ks.SSLError):
        return PermanentError(f"{doing}: TLS failure, check cacert/verify: {exc}")
    if isinstance(exc, ks.ConnectTimeout) and isinstance(exc.__context__, requests.exceptions.ReadTimeout):
        # A write may still be carried out; the caller decides (a read simply failed).
        return NoAnswer(f"{doing}: no answer in time: {exc}", delay)
    if isinstance(exc, ks.ConnectionError):  # connect failures and timeouts: nothing reached the cloud
        return TemporaryError(f"{doing}: cloud unreachable: {exc}", delay)
    if isinstance(exc, ks.EndpointNotFound):
        return PermanentError(f"{doing}: no such endpoint in the catalog; check region_name "
                              f"and interface ({exc})")
    status, message = _status_and_message(exc)
    retry_after = retry_after or getattr(exc, "retry_after", 0)
    if isinstance(retry_after, int | float) and retry_after > 0:
        delay = float(retry_after)
    what = f"{doing} refused ({status})" if status else f"{doing} failed"
    if status in (401, 403):
        return PermanentError(f"{what}: check the provider credentials and roles: {message}")
    if status == 404:
        return NotFound(f"{what}: {message}")
    if status == 413 or (status and 400 <= status < 500 and _mentions_quota(message)):
        return QuotaExceeded(f"{what}: {message}")
    if status in (408, 409, 429) or (status and status >= 500):
        return TemporaryError(f"{what}: {message}", delay)
    if status == 400:
        return PermanentError(f"{what}: the cloud rejected the request: {message}")
    return PermanentError(f"{what}: {message}")


def _mentions_quota(message: str) -> bool:
    lowered = message.lower()
    return "quota" in lowered or "exceeded" in lowered


class _RetryAfter(threading.local):
    """The last Retry-After header this thread received (heatclient drops headers)."""

    seconds: float | None = None

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        value = response.headers.get("Retry-After", "")
        self.seconds = float(value) if value.strip().isdigit() else None


# --- the provider --------------------------------------------------------------------


class OpenStackProvider(Provider):
    """Heat stacks in one OpenStack project. See README for the config keys."""

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self._lock = threading.Lock()
        self._session: Any = None
        self._heat: Any = None
        self._nova: Any = None
        self._validator: Any = None
        self._retry_after = _RetryAfter()

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Return (sub-key, what is expected) for each problem in ``config``."""
        return conf.check_config(config)

    # Clients are built on first use and shared by threads: keystoneauth keeps the
    # token in the auth plugin and re-authenticates when it expires or a 401 comes.
    def within(self, seconds: float | None) -> contextlib.AbstractContextManager[None]:
        """Requests of this thread inside the block end ``seconds`` from now at the latest."""
        return deadline.within(seconds)

    def session(self) -> Any:
        """The keystoneauth1 Session (built once)."""
        with self._lock:
            if self._session is None:
                self._session = self._build_session()
            return self._session

    def _build_session(self) -> Any:
        from keystoneauth1 import session as ks_session
        from keystoneauth1.identity import v3

        kind, kwargs = conf.auth_kwargs(self.config)
        plugin = v3.ApplicationCredential if kind == "application_credential" else v3.Password
        http = requests.Session()
        http.hooks["response"].append(self._retry_after.hook)
        # One pool per endpoint, as large as the threads that share this session (requests keeps
        # 10, and a thread past them opens a connection it then throws away). Blocking: never more
        # open at once than the pool holds. The validation client shares it (openstack_validate).
        # Each request's timeouts are cut to its thread's deadline, if it has one (``within``).
        size = int(conf.setting(self.config, "pool_size"))
        pool = deadline.BoundedAdapter(pool_maxsize=size, pool_block=True)
        http.mount("https://", pool)
        http.mount("http://", pool)
        cacert = self.config.get("cacert")
        session = ks_session.Session(
            auth=plugin(**kwargs), session=http,
            verify=cacert if cacert else bool(conf.setting(self.config, "verify")),
            user_agent="labxblock",
        )
        # Session() casts its timeout to one float; requests takes (connect, read)
        # and Session passes the attribute to it unchanged.
        session.timeout = conf.timeouts(self.config)
        return session

    def _client_kwargs(self) -> dict[str, Any]:
        return {"session": self.session(), "region_name": self.config.get("region_name"),
                "interface": conf.setting(self.config, "interface")}

    @property
    def heat(self) -> Any:
        """The heatclient v1 client."""
        if self._heat is None:
            from heatclient import client as heat_client

            self._heat = heat_client.Client("1", **self._client_kwargs())
        return self._heat

    @property
    def nova(self) -> Any:
        """The novaclient client (only needed for reboot-on-resume)."""
        if self._nova is None:
            from novaclient import client as nova_client

            kwargs = self._client_kwargs()
            kwargs["endpoint_type"] = kwargs.pop("interface")
            self._nova = nova_client.Client("2.1", **kwargs)
        return self._nova

    def validator(self) -> Any:
        """A heatclient for template validation: the same token, a short connect timeout."""
        kwargs = self._client_kwargs()  # takes the lock itself: before it here
        with self._lock:
            if self._validator is None:
                self._validator = validation.client(kwargs, conf.timeouts(self.config))
            return self._validator

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; anything it raises leaves as a typed error."""
        self._retry_after.seconds = None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # every client error must leave typed
            raise cloud_error(exc, f"{self.name}: {doing}", self._retry_after.seconds) from exc

    # --- the interface ---------------------------------------------------------------

    def create(self, spec: StackSpec) -> StackRef:
        """POST the stack; return its ref as soon as Heat accepted it."""
        body = create_body(spec, conf.setting(self.config, "create_timeout"))
        try:
            answer = self._call("stack create", self.heat.stacks.create, **body)
        except TemporaryError as exc:
            # A create retried after its answer was lost (a read timeout) finds its own
            # stack: hand that back, so create is idempotent for the caller.
            if "StackExists" not in str(exc):
                raise
            info = self.get(StackRef(spec.name))
            if info.state in (State.DELETING, State.DELETED) or not info.ref.data.get("id"):
                raise  # an old stack of that name is still going away: retry later
            return info.ref
        return StackRef(spec.name, {"id": answer["stack"]["id"]})

    def get(self, ref: StackRef) -> StackInfo:
        """One GET of the stack (outputs resolved); a missing stack is DELETED."""
        return self._show(ref, outputs=True)

    def status(self, ref: StackRef) -> StackInfo:
        """One GET of the stack without resolving its outputs (Heat's cheaper show)."""
        return self._show(ref, outputs=False)

    def _show(self, ref: StackRef, outputs: bool) -> StackInfo:
        try:
            stack = self._call("stack get", self.heat.stacks.get, stack_path(ref), resolve_outputs=outputs)
        except NotFound:
            return StackInfo(ref=ref, state=State.DELETED, reason="not found")
        info = stack_info(stack.to_dict())
        # Keep the caller's ref, unless it lacked the id Heat just told us.
        return StackInfo(ref=ref if ref.data.get("id") else info.ref, state=info.state,
                         raw_status=info.raw_status, reason=info.reason, outputs=info.outputs,
                         tags=info.tags, created_at=info.created_at)

    def list(self, tag: str) -> list[StackInfo]:
        """Every stack tagged ``tag``, a page of :data:`PAGE` a request.

        Heat's list carries no outputs: a caller that sees a stack become READY
        calls :meth:`get` once to read them. Heat lists a deleted stack as
        DELETE_COMPLETE (our DELETED) for a while after its delete.
        """
        return self._pages("stack list", {"tags": tag})

    def list_busy(self, tag: str) -> list[StackInfo]:
        """The stacks tagged ``tag`` that Heat is working on: ``status=IN_PROGRESS`` (Heat filters on
        the status part of ``<ACTION>_<STATUS>``), so the cost grows with stacks in progress only.

        The tag goes as ``tags_any``: Heat 27 joins the tag table for ``tags`` and then applies
        ``status`` to the tag table ("InvalidRequestError", HTTP 500); ``tags_any`` is a subquery.
        """
        return self._pages("stack list in progress", {"tags_any": tag, "status": "IN_PROGRESS"})

    def _pages(self, doing: str, query: dict[str, str]) -> list[StackInfo]:
        infos: list[StackInfo] = []
        marker = ""
        while True:
            params = {**query, "limit": PAGE, **({"marker": marker} if marker else {})}
            # heatclient's own list() asks once more after every short page; one request a page here.
            page = self._call(doing, self.heat.stacks._list, f"/stacks?{urlencode(params)}", "stacks")
            infos.extend(stack_info(stack.to_dict()) for stack in page)
            if len(page) < PAGE:
                return infos
            marker = page[-1].id

    def suspend(self, ref: StackRef) -> None:
        """Ask Heat to suspend the stack (Heat suspends its servers)."""
        self._call("stack suspend", self.heat.actions.suspend, stack_path(ref))

    def resume(self, ref: StackRef) -> None:
        """Ask Heat to resume the stack. See :meth:`after_resume` for reboot-on-resume."""
        self._call("stack resume", self.heat.actions.resume, stack_path(ref))

    def delete(self, ref: StackRef) -> None:
        """Ask Heat to delete the stack; a stack already gone counts as done."""
        with contextlib.suppress(NotFound):
            self._call("stack delete", self.heat.stacks.delete, stack_path(ref))

    def validate(
        self, template: str, environment: str | None = None, given: Collection[str] = ()
    ) -> list[TemplateProblem]:
        """Heat's template-validate: its refusal with the line it names, or parameters left unset."""
        try:
            env = environment_mapping(environment)
        except PermanentError as exc:
            return [TemplateProblem(str(exc))]
        self._retry_after.seconds = None
        try:
            answer = self.validator().stacks.validate(template=template, environment=env, files={})
        except Exception as exc:  # every client error must leave typed
            if _status_and_message(exc)[0] == 400:  # Heat refused the template: that is the answer
                return [validation.refusal(template, validation.heat_message(exc))]
            raise cloud_error(exc, f"{self.name}: template validate", self._retry_after.seconds) from exc
        return validation.unprovided(template, answer, given, env)

    def add_tags(self, ref: StackRef, tags: tuple[str, ...]) -> bool:
        """Heat sets a stack's tags only by an update: a PATCH with nothing but the tags (``existing``:
        its own template, environment and parameters) keeps every resource as it is. Heat refuses a
        suspended stack (PermanentError). Calls: a GET (its tags now), then the PATCH if one is missing.
        """
        have = self.status(ref).tags
        missing = [tag for tag in tags if tag not in have]
        if missing:
            self._call("stack tag", self.heat.stacks.update, stack_path(ref), existing=True,
                       tags=",".join([*have, *missing]))
        return True

    def after_resume(self, ref: StackRef) -> None:
        """Reboot the stack's servers if its template asks (output ``reboot_on_resume``).

        Called once by the caller when it sees a resume complete. Some guests come
        back from suspend with a stale network or clock; a soft reboot fixes them.
        Calls: one stack GET, one resource list, one reboot per server.
        """
        info = self.get(ref)
        if info.state != State.READY or not truthy(info.outputs.get("reboot_on_resume")):
            return
        for server_id in self.server_ids(ref):
            with contextlib.suppress(NotFound):  # a server gone away needs no reboot
                self._call("server reboot", self.nova.servers.reboot, server_id, "SOFT")

    def check(self, tag: str) -> CheckReport:
        """Keystone authentication, one Heat list, and Nova's absolute limits where the cloud has Nova."""
        try:
            access = self._call("authenticate", lambda: self.session().auth.get_access(self.session()))
        except ProviderError as exc:
            return CheckReport(False, (f"authenticate: {exc}",))
        lines = [f"authenticate: ok, project {access.project_name or access.project_id}"]
        try:
            stacks = self.list(tag)
        except ProviderError as exc:
            return CheckReport(False, (*lines, f"list: {exc}"))
        return CheckReport(True, (*lines, f"list: {len(stacks)} stack(s) tagged {tag}", self._quota()))

    def describe(self) -> str:
        """The project the credentials log in to (Keystone's answer, not the config's) and Keystone's URL."""
        where = conf.keystone_v3_url(self.config["auth_url"])
        try:
            access = self._call("authenticate", lambda: self.session().auth.get_access(self.session()))
        except ProviderError as exc:
            return f"project unknown ({exc}), Keystone {where}"
        return f"project {access.project_name} ({access.project_id}), Keystone {where}"

    def _quota(self) -> str:
        """Nova's limits, as one line; a cloud without Nova (or without the right) just says so."""
        try:
            limits = self._call("quota", lambda: list(self.nova.limits.get(reserved=False).absolute))
        except ProviderError as exc:
            return f"quota: not reported ({exc})"
        values = {item.name: item.value for item in limits}
        parts = [f"{label} {values[used]} of {'unlimited' if values[most] < 0 else values[most]}"
                 for label, used, most in QUOTA if used in values and most in values]
        return "quota: " + ", ".join(parts) if parts else "quota: not reported"

    def server_ids(self, ref: StackRef) -> list[str]:
        """The Nova ids of the stack's servers, nested stacks included."""
        resources = self._call("resource list", self.heat.resources.list, stack_path(ref),
                               nested_depth=5, filters={"type": SERVER_TYPE})
        return [res.physical_resource_id for res in resources
                if res.resource_type == SERVER_TYPE and res.physical_resource_id]
