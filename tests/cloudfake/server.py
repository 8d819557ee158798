"""The fake cloud's HTTP face: Keystone v3, the Heat v1 calls we make, Nova reboot, /_fake control.

URL layout (one port): ``/v3/...`` Keystone, ``/heat/v1/<project_id>/...`` Heat (stacks, validate),
``/nova/v2.1/...`` Nova, ``/_fake/...`` control (config, counters, stacks, reset, revoke).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.cloudfake.cloud import APP_CREDENTIAL, DOMAIN, PROJECT, USER, FakeCloud, FakeHTTPError

Answer = tuple[int, Any, dict[str, str]]
_HEAT = re.compile(r"^/heat/v1/(?P<project>[^/]+)/stacks(?:/(?P<rest>.*))?$")
_HEAT_VALIDATE = re.compile(r"^/heat/v1/(?P<project>[^/]+)/validate$")
_NOVA_ACTION = re.compile(r"^/nova/v2\.1/servers/(?P<server>[^/]+)/action$")
_LOOKUP_PATHS = {"resources", "events", "template", "actions", "environment", "files", "outputs"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 2048  # hundreds of clients connect at once in the benchmarks
    cloud: FakeCloud

    def process_request(self, request: Any, client_address: Any) -> None:
        self.cloud.count("connections")  # TCP connections accepted: what a client's pool costs the cloud
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # thousands of requests in benchmarks: keep the console quiet

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        try:
            body = json.loads(raw) if raw else {}
            status, payload, headers = self._route(method, url.path, parse_qs(url.query), body)
        except FakeHTTPError as exc:
            status, payload, headers = exc.status, exc.body, exc.headers
        except (ValueError, KeyError, TypeError) as exc:
            status, payload, headers = 400, {"error": {"message": f"bad request: {exc}"}}, {}
        self.server.cloud.count(f"status_{status}")
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left: that is the point of a timeout fault

    # --- routing --------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        cloud = self.server.cloud
        path = path.rstrip("/") or "/"
        if path.startswith("/_fake/"):
            return self._control(method, path[len("/_fake/"):], body)
        if path in ("/", "/v3"):
            return 200, self._version_doc(), {}
        if path == "/v3/auth/tokens" and method == "POST":
            return self._faulted("auth", None, lambda: self._token(body))
        if not cloud.token_valid(self.headers.get("X-Auth-Token")):
            cloud.count("token_refused")
            return 401, {"error": {"code": 401, "title": "Unauthorized",
                                   "message": "The request you have made requires authentication."}}, {}
        heat = _HEAT.match(path)
        if heat:
            if heat["project"] != PROJECT["id"]:
                return 403, {"error": {"message": "wrong project"}}, {}
            return self._heat(method, heat["rest"] or "", query, body)
        if path == "/nova/v2.1/limits" and method == "GET":
            return self._faulted("nova_limits", None, lambda: (
                200, {"limits": {"rate": [], "absolute": cloud.limits()}}, {}))
        validate = _HEAT_VALIDATE.match(path)
        if validate and method == "POST":
            if validate["project"] != PROJECT["id"]:
                return 403, {"error": {"message": "wrong project"}}, {}
            return self._faulted("stack_validate", None, lambda: (200, cloud.validate(body), {}))
        nova = _NOVA_ACTION.match(path)
        if nova and method == "POST" and "reboot" in body:
            return self._faulted("server_reboot", None, lambda: self._reboot(nova["server"]))
        return 404, {"error": {"message": f"no route {method} {path}"}}, {}

    def _faulted(self, kind: str, stack_name: str | None, handler: Callable[[], Answer]) -> Answer:
        cloud = self.server.cloud
        cloud.count(kind)
        sleep, error = cloud.fault(kind, stack_name)
        if sleep:
            time.sleep(sleep)
        if error is not None:
            raise error
        answer = handler()
        # The work is done but the caller does not know yet: a worker killed now leaves it unrecorded.
        delay = float(cloud.config.get("answer_delay_seconds") or 0)
        if delay:
            time.sleep(delay)
        return answer

    def _heat(self, method: str, rest: str, query: dict[str, list[str]], body: Any) -> Answer:
        cloud, base = self.server.cloud, f"{self.base}/heat/v1/{PROJECT['id']}"
        parts = [p for p in rest.split("/") if p]
        if not parts:
            if method == "POST":
                return self._faulted("stack_create", body.get("stack_name"), lambda: (
                    201, {"stack": self._created(cloud.create(body), base)}, {}))
            # Kinds apart: the status-filtered list is the engine's list of work in flight.
            kind = "stack_list_busy" if query.get("status") else "stack_list"
            return self._faulted(kind, None, lambda: self._list(query, base))
        name = parts[0]
        if len(parts) == 1 or parts[1] in _LOOKUP_PATHS:
            # Heat's lookup: a name (or bare id) redirects to name/id, keeping any sub-path.
            def lookup() -> Answer:
                stack = cloud.find(name)
                tail = "/".join([stack.name, stack.id, *parts[1:]])
                return 302, {"location": f"{base}/stacks/{tail}"}, {"Location": f"{base}/stacks/{tail}"}
            return self._faulted("stack_lookup", name, lookup)
        stack_id, sub = parts[1], parts[2:]
        if not sub and method == "GET":
            outputs = query.get("resolve_outputs", ["True"])[-1].lower() != "false"
            return self._faulted("stack_get", name, lambda: (200, {"stack": cloud.document(
                cloud.find(name, stack_id), base, detail=True, outputs=outputs)}, {}))
        if not sub and method == "PATCH":  # Heat's update_patch: the stack's own template, these changes
            return self._faulted("stack_update", name, lambda: self._patch(name, stack_id, body))
        if not sub and method == "DELETE":
            return self._faulted("stack_delete", name, lambda: self._act(name, stack_id, "DELETE"))
        if sub == ["actions"] and method == "POST":
            action = next(iter(body), "")
            if action not in ("suspend", "resume"):
                return 400, {"error": {"message": f"unsupported action {action}"}}, {}
            return self._faulted(f"stack_{action}", name, lambda: self._act(name, stack_id, action.upper()))
        if sub == ["resources"] and method == "GET":
            return self._faulted("resource_list", name, lambda: (
                200, {"resources": self._resources(cloud.find(name, stack_id), query)}, {}))
        return 404, {"error": {"message": f"no route {method} stacks/{rest}"}}, {}

    # --- answers --------------------------------------------------------------------

    def _list(self, query: dict[str, list[str]], base: str) -> Answer:
        """Heat's stack list: ``tags``, ``status`` (the part after the action), ``limit``, ``marker``.

        It costs Heat time in proportion to the stacks it returns, as on the real service.
        """
        cloud = self.server.cloud
        tags = [t for value in query.get("tags", []) for t in value.split(",") if t]
        any_tags = [t for value in query.get("tags_any", []) for t in value.split(",") if t]
        if tags and query.get("status"):
            # Heat 27 joins the tag table for ``tags`` and then looks for ``status`` there.
            return 500, {"error": {"type": "InvalidRequestError", "message": "Entity namespace for "
                                   "\"stack_tag\" has no property \"status\""}}, {}
        statuses = [s.upper() for s in query.get("status", [])]
        limit = int(query["limit"][-1]) if "limit" in query else None
        marker = query["marker"][-1] if "marker" in query else None
        stacks = cloud.listing(tags, statuses, limit, marker, any_tags)
        cloud.count("stacks_listed", len(stacks))
        time.sleep(len(stacks) * float(cloud.config["list_seconds_per_stack"]))
        return 200, {"stacks": [cloud.document(s, base, detail=False) for s in stacks]}, {}

    @staticmethod
    def _created(stack: Any, base: str) -> dict[str, Any]:
        return {"id": stack.id, "links": [{"href": f"{base}/stacks/{stack.name}/{stack.id}",
                                           "rel": "self"}]}

    @staticmethod
    def _resources(stack: Any, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        wanted = set(query.get("type", []))
        return [{"resource_name": rname, "physical_resource_id": sid, "resource_type": "OS::Nova::Server",
                 "resource_status": "CREATE_COMPLETE", "links": []}
                for rname, sid in stack.servers.items() if not wanted or "OS::Nova::Server" in wanted]

    def _act(self, name: str, stack_id: str, action: str) -> Answer:
        cloud = self.server.cloud
        cloud.act(cloud.find(name, stack_id), action)
        return (204 if action == "DELETE" else 200), None, {}

    def _patch(self, name: str, stack_id: str, body: dict[str, Any]) -> Answer:
        cloud = self.server.cloud
        cloud.patch(cloud.find(name, stack_id), body)
        return 202, None, {}

    def _reboot(self, server_id: str) -> Answer:
        self.server.cloud.reboot(server_id)
        return 202, None, {}

    def _token(self, body: dict[str, Any]) -> Answer:
        token, doc = self.server.cloud.authenticate(body)
        doc["token"]["catalog"] = self._catalog()
        return 201, doc, {"X-Subject-Token": token}

    def _catalog(self) -> list[dict[str, Any]]:
        def service(kind: str, name: str, url: str) -> dict[str, Any]:
            return {"type": kind, "name": name, "id": name, "endpoints": [
                {"id": f"{name}-{i}", "interface": i, "region": "RegionOne", "region_id": "RegionOne",
                 "url": url} for i in ("public", "internal", "admin")]}
        return [service("orchestration", "heat", f"{self.base}/heat/v1/{PROJECT['id']}"),
                service("compute", "nova", f"{self.base}/nova/v2.1"),
                service("identity", "keystone", f"{self.base}/v3")]

    def _version_doc(self) -> dict[str, Any]:
        return {"version": {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                            "links": [{"rel": "self", "href": f"{self.base}/v3/"}],
                            "media-types": [{"base": "application/json",
                                             "type": "application/vnd.openstack.identity-v3+json"}]}}

    def _control(self, method: str, what: str, body: Any) -> Answer:
        cloud = self.server.cloud
        if what == "config" and method == "POST":
            try:
                return 200, cloud.configure(**body), {}
            except ValueError as exc:
                return 400, {"error": {"message": str(exc)}}, {}
        if what == "config":
            return 200, cloud.configure(), {}
        if what == "counters":
            return 200, {"counters": cloud.counters(), "reboots": dict(cloud.reboots),
                         "stacks": len(cloud.stacks)}, {}
        if what == "stacks":
            return 200, {"stacks": cloud.timeline()}, {}
        if what == "reset" and method == "POST":
            cloud.reset()
            return 200, {}, {}
        if what == "revoke_tokens" and method == "POST":
            cloud.revoke_tokens()
            return 200, {}, {}
        return 404, {"error": {"message": f"no control {what}"}}, {}


class CloudFake:
    """The fake cloud, served on 127.0.0.1 from a thread; see ``start``."""

    def __init__(self, port: int = 0, **config: Any) -> None:
        self.cloud = FakeCloud(**config)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.cloud = self.cloud
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Serve in a daemon thread; return the base URL."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="cloudfake",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self.base_url

    def serve_forever(self) -> None:
        """Serve in this thread (the subprocess entry point)."""
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def provider_config(self) -> dict[str, Any]:
        """Password-auth provider config, the same keys the real rig yields.

        Its labs (the engine tests' lab port, sshd) answer on this host, so loopback is allowed.
        """
        return {"auth_url": f"{self.base_url}/v3", "username": USER["name"], "password": USER["password"],
                "project_name": PROJECT["name"], "user_domain_name": DOMAIN["name"],
                "project_domain_name": DOMAIN["name"], "region_name": "RegionOne", "interface": "public",
                "allowed_networks": ["127.0.0.0/8"]}

    @property
    def app_credential_config(self) -> dict[str, Any]:
        """Application-credential provider config."""
        return {"auth_url": f"{self.base_url}/v3", "application_credential_id": APP_CREDENTIAL["id"],
                "application_credential_secret": APP_CREDENTIAL["secret"], "region_name": "RegionOne",
                "interface": "public"}

    # The same control surface as FakeControl, so tests need not care which they hold.
    def configure(self, **changes: Any) -> dict[str, Any]:
        return self.cloud.configure(**changes)

    def counters(self) -> dict[str, int]:
        return self.cloud.counters()

    def reboots(self) -> dict[str, int]:
        return dict(self.cloud.reboots)

    def timeline(self) -> list[dict[str, Any]]:
        return self.cloud.timeline()

    def reset(self) -> None:
        self.cloud.reset()

    def revoke_tokens(self) -> None:
        self.cloud.revoke_tokens()
