"""The fake cloud's state: users, tokens, stacks on a clock, faults and counters.

No HTTP here (see server.py): every method is called under one lock by request
threads, or directly by a test in the same process. Stack progress is computed
lazily from the clock when a stack is read, so thousands of stacks cost no
background work.
"""

from __future__ import annotations

import contextlib
import copy
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

DEFAULT_CONFIG: dict[str, Any] = {
    # seconds each stack action stays IN_PROGRESS before COMPLETE (or FAILED)
    "delays": {"create": 0.3, "suspend": 0.2, "resume": 0.2, "delete": 0.2, "update": 0.2},
    "latency_seconds": 0.0,  # added to every Heat/Nova call
    # Heat's cost of a list grows with the stacks it returns (measured on Heat 27: ~25 ms a stack)
    "list_seconds_per_stack": 0.025,
    "create_latency_seconds": 0.0,  # a create request's time before the stack exists (Heat: 2-16 s loaded)
    "deleted_listed_seconds": 0.0,  # a deleted stack stays listed DELETE_COMPLETE this long (Heat: ~60)
    # A delete of a stack in progress first shows "<ACTION>_FAILED", "Stack <ACTION> cancelled" this long
    "cancel_seconds": 0.3,
    "answer_delay_seconds": 0.0,  # sleep after doing the work, before answering (a call "in flight")
    "error_rate": 0.0,  # probability a Heat/Nova call answers error_status
    "error_status": 503,
    "retry_after": None,  # seconds, sent as Retry-After with injected errors
    "timeout_rate": 0.0,  # probability a call sleeps timeout_seconds before answering
    "timeout_seconds": 3.0,
    "fail_next": 0,  # the next N Heat/Nova calls answer fail_next_status
    "fail_next_status": 503,
    "not_found": [],  # stack names for which every call answers 404
    "quota_exceeded": False,  # every create is refused for quota, as Heat says it
    "max_stacks": None,  # refuse creates beyond this many live stacks (Heat's per-tenant limit)
    "max_instances": -1,  # Nova's instance quota, as its limits API reports it (-1: unlimited)
    "create_fail_rate": 0.0,  # probability a create ends CREATE_FAILED
    "token_ttl_seconds": 3600.0,  # tokens are refused (401) after this long...
    "token_expires_in_seconds": 3600.0,  # ...whatever expiry the token body announced
    "fault_kinds": None,  # call kinds the random/fail_next faults apply to; None = all but auth
}

PROJECT = {"id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "name": "labs"}
DOMAIN = {"id": "default", "name": "Default"}
USER = {"id": "5e1f2a3b4c5d6e7f8091a2b3c4d5e6f7", "name": "learner", "password": "fake-secret"}
APP_CREDENTIAL = {"id": "a9c8e7d6f5e4d3c2b1a0f9e8d7c6b5a4", "name": "labxblock",
                  "secret": "fake-app-secret"}
SERVER_TYPE = "OS::Nova::Server"


class FakeHTTPError(Exception):
    """An answer other than success, in the shape the real service sends."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def heat_error(status: int, kind: str, message: str) -> FakeHTTPError:
    """An error as Heat's fault middleware renders it."""
    titles = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict",
              413: "Request Entity Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
    return FakeHTTPError(status, {"code": status, "title": titles.get(status, "Error"),
                                  "explanation": message,
                                  "error": {"type": kind, "message": message, "traceback": None}})


@dataclass
class FakeStack:
    """One stack: the action it is in, when that started, and how it will end."""

    id: str
    name: str
    tags: list[str]
    parameters: dict[str, Any]
    outputs: dict[str, Any]
    servers: dict[str, str]  # resource name -> fake Nova server id
    action: str = "CREATE"
    started: float = field(default_factory=time.monotonic)
    delay: float = 0.0
    fails: str = ""  # the reason, if this action is going to fail
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    cancelled: str = ""  # the action in progress that this delete stopped
    cancel_seconds: float = 0.0  # how long the stopped action shows FAILED before the delete shows

    def status(self, now: float) -> tuple[str, str]:
        """(stack_status, reason) at ``now``."""
        if self.cancelled and now < self.started + self.cancel_seconds:
            return f"{self.cancelled}_FAILED", f"Stack {self.cancelled} cancelled"
        if now < self.started + self.delay:
            return f"{self.action}_IN_PROGRESS", f"Stack {self.action} started"
        if self.fails:
            return f"{self.action}_FAILED", self.fails
        return f"{self.action}_COMPLETE", f"Stack {self.action} completed successfully"


def _synthetic_output(key: str, definition: Any, stack: FakeStack, params: dict[str, Any]) -> Any:
    """An output value: literals and get_param as Heat would; anything computed, invented."""
    value = definition.get("value") if isinstance(definition, dict) else None
    if isinstance(value, dict) and "get_param" in value:
        return params.get(str(value["get_param"]))
    if not isinstance(value, dict | list) and value is not None:
        return value
    if key == "public_ip":
        return f"192.0.2.{int(stack.id[:4], 16) % 250 + 1}"
    if key == "private_key":
        body = secrets.token_urlsafe(48)
        return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    if key == "password":
        return secrets.token_urlsafe(12)
    return f"{key}-{stack.id[:8]}"


def _create_wait(resources: dict[str, Any], params: dict[str, Any]) -> float:
    """Seconds the template's OS::Heat::TestResource creates wait (Heat runs them side by side)."""
    waits = [0.0]
    for res in resources.values():
        props = (res.get("properties") or {}) if isinstance(res, dict) else {}
        wait = (props.get("action_wait_secs") or {}).get("create", props.get("wait_secs", 0))
        if isinstance(wait, dict) and "get_param" in wait:
            wait = params.get(str(wait["get_param"]), 0)
        with contextlib.suppress(TypeError, ValueError):  # an expression of the template's: no wait
            waits.append(float(wait))
    return max(waits)


class FakeCloud:
    """Keystone + Heat + Nova state behind the fake's HTTP server."""

    def __init__(self, **config: Any) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random()
        # Seconds on the fake's clock; a benchmark on an accelerated clock gives its own.
        self.clock: Callable[[], float] = time.monotonic
        self.reset()
        self.configure(**config)

    # --- control ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget stacks, tokens, counters and faults."""
        with self.lock:
            self.config = copy.deepcopy(DEFAULT_CONFIG)
            self.stacks: dict[str, FakeStack] = {}
            self.by_name: dict[str, str] = {}
            self.order: list[str] = []  # every stack id ever created, newest last (list order, markers)
            self.deleting: set[str] = set()  # ids of stacks in DELETE, swept when complete
            self.tokens: dict[str, float] = {}  # token -> monotonic time it stops working
            self.counts: Counter[str] = Counter()
            self.reboots: Counter[str] = Counter()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings (``delays`` is merged key by key); return the whole config."""
        with self.lock:
            for key, value in changes.items():
                if key not in DEFAULT_CONFIG:
                    raise ValueError(f"unknown fake cloud setting {key!r}")
                if key == "delays":
                    self.config["delays"].update(value)
                else:
                    self.config[key] = value
            return copy.deepcopy(self.config)

    def counters(self) -> dict[str, int]:
        """Calls by kind (``stack_create``, ``auth``, ``status_503``…) since the last reset."""
        with self.lock:
            return dict(self.counts)

    def revoke_tokens(self) -> None:
        """Make every issued token invalid now, as a Keystone token flush would."""
        with self.lock:
            self.tokens.clear()

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.counts[kind] += n

    # --- keystone -----------------------------------------------------------------

    def authenticate(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Check a v3 auth request; return (token, token body)."""
        identity = body.get("auth", {}).get("identity", {})
        methods = identity.get("methods", [])
        if "password" in methods:
            user = identity.get("password", {}).get("user", {})
            ok = (user.get("name") == USER["name"] or user.get("id") == USER["id"]) \
                and user.get("password") == USER["password"]
        elif "application_credential" in methods:
            cred = identity.get("application_credential", {})
            ok = (cred.get("id") == APP_CREDENTIAL["id"] or cred.get("name") == APP_CREDENTIAL["name"]) \
                and cred.get("secret") == APP_CREDENTIAL["secret"]
        else:
            ok = False
        if not ok:
            self.count("auth_refused")
            raise FakeHTTPError(401, {"error": {"code": 401, "title": "Unauthorized",
                                                "message": "The request you have made requires "
                                                           "authentication."}})
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens[token] = self.clock() + float(self.config["token_ttl_seconds"])
            announced = float(self.config["token_expires_in_seconds"])
        now = time.time()
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t))  # noqa: E731
        return token, {"token": {
            "methods": methods, "issued_at": stamp(now), "expires_at": stamp(now + announced),
            "user": {"id": USER["id"], "name": USER["name"], "domain": DOMAIN},
            "project": {**PROJECT, "domain": DOMAIN},
            "roles": [{"id": "m1", "name": "member"}], "catalog": []}}

    def token_valid(self, token: str | None) -> bool:
        with self.lock:
            return token is not None and self.tokens.get(token, 0.0) > self.clock()

    # --- faults -------------------------------------------------------------------

    def fault(self, kind: str, stack_name: str | None) -> tuple[float, FakeHTTPError | None]:
        """Decide this call's fate: (seconds to sleep first, error to answer or None)."""
        with self.lock:
            cfg = self.config
            sleep = float(cfg["latency_seconds"])
            kinds = cfg["fault_kinds"]
            applies = kind != "auth" if kinds is None else kind in kinds
            if not applies:
                return sleep, None
            if cfg["fail_next"] > 0:
                cfg["fail_next"] -= 1
                return sleep, self._injected(int(cfg["fail_next_status"]))
            if self.rng.random() < cfg["timeout_rate"]:
                self.counts["injected_timeout"] += 1
                return sleep + float(cfg["timeout_seconds"]), None
            if self.rng.random() < cfg["error_rate"]:
                return sleep, self._injected(int(cfg["error_status"]))
            if stack_name and stack_name in cfg["not_found"]:
                return sleep, heat_error(404, "EntityNotFound", f"The Stack ({stack_name}) could "
                                                                "not be found.")
            return sleep, None

    def _injected(self, status: int) -> FakeHTTPError:
        self.counts[f"injected_{status}"] += 1
        error = heat_error(status, "InjectedFault", f"injected fault {status}")
        if self.config["retry_after"] is not None:
            error.headers["Retry-After"] = str(self.config["retry_after"])
        return error

    # --- heat ---------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Forget stacks whose delete has completed (Heat hides them, after a while)."""
        linger = float(self.config["deleted_listed_seconds"])
        for sid in list(self.deleting):
            stack = self.stacks[sid]
            if stack.action != "DELETE":
                self.deleting.discard(sid)
            elif stack.status(now)[0] == "DELETE_COMPLETE":
                if self.by_name.get(stack.name) == sid:
                    del self.by_name[stack.name]  # the name is free again at once
                if now >= stack.started + stack.delay + linger:
                    self.deleting.discard(sid)
                    del self.stacks[sid]

    def find(self, name_or_id: str, stack_id: str | None = None) -> FakeStack:
        """The live stack named (or with id) ``name_or_id``; 404 otherwise."""
        with self.lock:
            self._sweep(self.clock())
            sid = stack_id or self.by_name.get(name_or_id, name_or_id)
            stack = self.stacks.get(sid)
            if stack is None or name_or_id not in (stack.name, stack.id) or (
                    stack_id is None and self.by_name.get(stack.name) != stack.id):
                raise heat_error(404, "EntityNotFound", f"The Stack ({name_or_id}) could not be found.")
            return stack

    @staticmethod
    def parse_template(text: str) -> dict[str, Any]:
        """A template as Heat 27 reads it; its 400 answers word for word (measured in the rig)."""
        try:
            template = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise heat_error(400, "HTTPBadRequest", "Template not in valid format: Error parsing template "
                                                    f"[root stack] {exc}") from None
        if not isinstance(template, dict):
            raise heat_error(400, "HTTPBadRequest", "Template not in valid format: The template is not a "
                                                    "JSON object or YAML mapping.")
        if "heat_template_version" not in template:
            raise heat_error(400, "HTTPBadRequest", "Template not in valid format: Template format version "
                                                    "not found.")
        return template

    def validate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Heat's template-validate: the template's parameters (with their defaults), or Heat's 400.

        Heat checks far more (resource types, properties, get_attr); the fake checks the
        template's format only, and a test of the rest runs against the rig's real Heat.
        """
        template = self.parse_template(body.get("template") or "")
        params = {}
        for key, spec in (template.get("parameters") or {}).items():
            spec = spec if isinstance(spec, dict) else {}
            params[key] = {"Type": str(spec.get("type", "string")).capitalize(), "Label": key,
                           "Description": spec.get("description", ""), "NoEcho": "false"}
            if "default" in spec:
                params[key]["Default"] = spec["default"]
        return {"Description": template.get("description", "No description"), "Parameters": params,
                "Environment": {"resource_registry": {"resources": {}}, "parameters": {},
                                "parameter_defaults": {}, "event_sinks": []}}

    def create(self, body: dict[str, Any]) -> FakeStack:
        """Validate a create body as Heat would and start the stack's CREATE.

        Heat validates and stores the whole template before the stack exists and the request is
        answered: ``create_latency_seconds`` stands for that time.
        """
        latency = float(self.config["create_latency_seconds"])
        if latency:
            time.sleep(latency)
        name = body.get("stack_name") or ""
        template = self.parse_template(body.get("template") or "")
        params = dict(body.get("parameters") or {})
        for key, spec in (template.get("parameters") or {}).items():
            if key not in params:
                if not isinstance(spec, dict) or "default" not in spec:
                    raise heat_error(400, "UserParameterMissing", f"The Parameter ({key}) was not "
                                                                  "provided.")
                params[key] = spec["default"]
        resources = template.get("resources") or {}
        with self.lock:
            cfg = self.config
            self._sweep(self.clock())
            if cfg["quota_exceeded"] or (cfg["max_stacks"] is not None
                                         and len(self.stacks) >= cfg["max_stacks"]):
                raise heat_error(400, "RequestLimitExceeded", "Request limit exceeded: You have "
                                 "reached the maximum stacks per tenant. Please delete some stacks.")
            if name in self.by_name:
                raise heat_error(409, "StackExists", f"The Stack ({name}) already exists.")
            stack = FakeStack(
                id=str(uuid.uuid4()), name=name, parameters=params, outputs={}, started=self.clock(),
                tags=[t for t in str(body.get("tags") or "").split(",") if t],
                servers={rname: str(uuid.uuid4()) for rname, res in resources.items()
                         if isinstance(res, dict) and res.get("type") == SERVER_TYPE},
                delay=float(cfg["delays"].get("create", 0.0)) + _create_wait(resources, params))
            failing = [rname for rname, res in resources.items() if isinstance(res, dict)
                       and (res.get("properties") or {}).get("fail") is True]
            if failing:
                stack.fails = (f"Resource CREATE failed: ValueError: resources.{failing[0]}: "
                               "Test Resource failed")
            elif self.rng.random() < cfg["create_fail_rate"]:
                stack.fails = "Resource CREATE failed: injected create failure"
            stack.outputs = {key: _synthetic_output(key, definition, stack, params)
                             for key, definition in (template.get("outputs") or {}).items()}
            self.stacks[stack.id] = stack
            self.by_name[name] = stack.id
            self.order.append(stack.id)
            return stack

    def act(self, stack: FakeStack, action: str) -> None:
        """Start ``action`` (SUSPEND, RESUME, DELETE) on ``stack``."""
        with self.lock:
            status = stack.status(self.clock())[0]
            if status == "DELETE_COMPLETE" and action != "DELETE":
                raise heat_error(404, "EntityNotFound", f"The Stack ({stack.name}) could not be found.")
            if action != "DELETE" and status.endswith("_IN_PROGRESS"):
                raise heat_error(409, "ActionInProgress", f"Stack {stack.name} already has an "
                                                          f"action ({status}) in progress.")
            if action == "DELETE" and stack.action == "DELETE":
                return  # Heat lets a second delete join the first
            if status == f"{action}_COMPLETE":
                return  # Heat: "already suspended" / "already resumed", nothing done
            in_progress = status.endswith("_IN_PROGRESS")
            stack.cancelled = stack.action if action == "DELETE" and in_progress else ""
            stack.cancel_seconds = float(self.config["cancel_seconds"])
            stack.action, stack.started, stack.fails = action, self.clock(), ""
            if action == "DELETE":
                self.deleting.add(stack.id)
            stack.delay = float(self.config["delays"].get(action.lower(), 0.0))
            if stack.cancelled:
                stack.delay += stack.cancel_seconds  # the delete proper starts after the cancel

    def patch(self, stack: FakeStack, body: dict[str, Any]) -> None:
        """A PATCH update (``existing``: the stack's own template and parameters), as Heat runs it: an
        UPDATE of the stack that changes only what the body names. The fake knows ``tags`` only."""
        unknown = sorted(set(body) - {"tags", "existing"})
        if unknown:
            raise heat_error(400, "InvalidRequest", f"the cloud fake updates tags only, not {unknown}")
        with self.lock:
            status = stack.status(time.monotonic())[0]
            if stack.action in ("SUSPEND", "DELETE"):  # heat.engine.service.EngineService.update_stack
                what = "suspended" if stack.action == "SUSPEND" else "deleting"
                raise heat_error(400, "NotSupported", f"Updating a stack when it is {what} is not supported.")
            if status.endswith("_IN_PROGRESS"):
                raise heat_error(409, "ActionInProgress", f"Stack {stack.name} already has an action "
                                                          f"({status}) in progress.")
            if "tags" in body:
                stack.tags = [t for t in str(body.get("tags") or "").split(",") if t]
            stack.action, stack.started, stack.fails = "UPDATE", time.monotonic(), ""
            stack.delay = float(self.config["delays"].get("update", 0.0))

    def document(self, stack: FakeStack, base: str, detail: bool, outputs: bool = True) -> dict[str, Any]:
        """The stack as Heat's show (detail, outputs resolved unless not asked) or list renders it."""
        with self.lock:
            status, reason = stack.status(self.clock())
        doc: dict[str, Any] = {
            "id": stack.id, "stack_name": stack.name, "stack_status": status,
            "stack_status_reason": reason, "tags": list(stack.tags) or None,
            "creation_time": stack.created_at, "updated_time": None, "deletion_time": None,
            "description": "", "stack_owner": USER["name"], "parent": None,
            "links": [{"href": f"{base}/stacks/{stack.name}/{stack.id}", "rel": "self"}],
        }
        if detail:
            doc["parameters"] = {k: str(v) for k, v in stack.parameters.items()}
            doc["disable_rollback"] = True
        if detail and outputs:
            # Like Heat, outputs are resolved whatever the status; the client decides.
            doc["outputs"] = [] if status.startswith("CREATE_IN") else [
                {"output_key": k, "output_value": v, "description": ""} for k, v in stack.outputs.items()]
        return doc

    def listing(self, tags: Sequence[str], statuses: Sequence[str] = (), limit: int | None = None,
                marker: str | None = None, any_tags: Sequence[str] = ()) -> list[FakeStack]:
        """Listed stacks carrying every tag in ``tags`` (and one of ``any_tags``, if given), as Heat
        lists them: newest first, filtered on the status part of ``<ACTION>_<STATUS>`` when
        ``statuses`` are given, ``limit`` after ``marker``."""
        with self.lock:
            now = self.clock()
            self._sweep(now)
            ids = self.order[::-1]
            if marker:
                if marker not in ids:
                    raise heat_error(404, "NotFound", f"marker {marker} not found")
                ids = ids[ids.index(marker) + 1:]
            found = []
            for sid in ids:
                stack = self.stacks.get(sid)
                if stack is None or not all(t in stack.tags for t in tags):
                    continue
                if any_tags and not any(t in stack.tags for t in any_tags):
                    continue
                if statuses and stack.status(now)[0].split("_", 1)[1] not in statuses:
                    continue
                found.append(stack)
                if limit is not None and len(found) >= limit:
                    break
            return found

    def timeline(self) -> list[dict[str, Any]]:
        """Every stack's current action and when (wall clock, epoch seconds) it started and ends, for
        benchmarks that time how soon the engine sees what the cloud finished."""
        with self.lock:
            now, wall = time.monotonic(), time.time()
            return [{"name": s.name, "action": s.action, "status": s.status(now)[0],
                     "started_at": wall - (now - s.started), "done_at": wall - (now - s.started - s.delay)}
                    for s in self.stacks.values()]

    def limits(self) -> dict[str, Any]:
        """Nova's absolute limits: the instance quota and the servers of the live stacks."""
        with self.lock:
            self._sweep(self.clock())
            used = sum(len(s.servers) for s in self.stacks.values())
            return {"maxTotalInstances": self.config["max_instances"], "totalInstancesUsed": used,
                    "maxTotalCores": -1, "totalCoresUsed": used, "maxTotalRAMSize": -1,
                    "totalRAMUsed": 512 * used}

    def reboot(self, server_id: str) -> None:
        """Record a Nova reboot of ``server_id``; 404 for an unknown server."""
        with self.lock:
            known = {sid for s in self.stacks.values() for sid in s.servers.values()}
            if server_id not in known:
                raise FakeHTTPError(404, {"itemNotFound": {"code": 404, "message": f"Instance "
                                                           f"{server_id} could not be found."}})
            self.reboots[server_id] += 1
