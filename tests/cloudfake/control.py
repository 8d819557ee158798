"""Drive a fake cloud running in another process (or thread) over its ``/_fake`` API."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


class FakeControl:
    """The control surface of :class:`~tests.cloudfake.server.CloudFake`, over HTTP."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, what: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}/_fake/{what}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            return json.loads(answer.read() or b"{}")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change fake settings (see cloud.DEFAULT_CONFIG); return the whole config."""
        return self._call("POST", "config", changes)

    def counters(self) -> dict[str, int]:
        """Calls by kind since the last reset."""
        return self._call("GET", "counters")["counters"]

    def reboots(self) -> dict[str, int]:
        """Nova reboots by server id."""
        return self._call("GET", "counters")["reboots"]

    def timeline(self) -> list[dict[str, Any]]:
        """Each stack's current action, its status, and when it started and ends (epoch seconds)."""
        return self._call("GET", "stacks")["stacks"]

    def reset(self) -> None:
        """Forget stacks, tokens, counters and faults."""
        self._call("POST", "reset", {})

    def revoke_tokens(self) -> None:
        """Invalidate every token now."""
        self._call("POST", "revoke_tokens", {})
