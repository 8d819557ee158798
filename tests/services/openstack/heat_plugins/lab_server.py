"""``LabXBlock::Test::Server``: a Heat resource standing in for a lab's server.

Loaded by the rig's Heat through ``[DEFAULT] plugin_dirs``; runs inside Heat's
virtualenv. Every action (create, suspend, resume, delete) takes the number of
seconds its property asks for, without holding an engine thread: ``handle_*``
returns a deadline and Heat polls ``check_*_complete`` until it has passed.
An action named in ``fail_on`` fails once its time is up.

Attributes: ``public_ip`` (the property, default 127.0.0.1), ``server_id``,
``private_key``/``public_key`` (an ed25519 pair made at create, OpenSSH format),
``suspend_count``/``resume_count`` (how often it was suspended/resumed).
"""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from heat.common import exception
from heat.engine import attributes, constraints, properties, resource, support
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

ACTIONS = ("CREATE", "SUSPEND", "RESUME", "DELETE")


class LabServer(resource.Resource):
    """A fake server whose every action takes real time and can be made to fail."""

    support_status = support.SupportStatus(version="27.0.0")

    PROPERTIES = (CREATE_SECS, SUSPEND_SECS, RESUME_SECS, DELETE_SECS, FAIL_ON, PUBLIC_IP) = (
        "create_secs",
        "suspend_secs",
        "resume_secs",
        "delete_secs",
        "fail_on",
        "public_ip",
    )
    ATTRIBUTES = (
        PUBLIC_IP_ATTR,
        SERVER_ID,
        PRIVATE_KEY,
        PUBLIC_KEY,
        SUSPEND_COUNT,
        RESUME_COUNT,
    ) = ("public_ip", "server_id", "private_key", "public_key", "suspend_count", "resume_count")

    properties_schema = {
        **{
            name: properties.Schema(
                properties.Schema.NUMBER,
                f"Seconds the {name.split('_')[0]} action takes.",
                default=0,
                constraints=[constraints.Range(min=0, max=3600)],
            )
            for name in (CREATE_SECS, SUSPEND_SECS, RESUME_SECS, DELETE_SECS)
        },
        FAIL_ON: properties.Schema(
            properties.Schema.LIST,
            "Actions that fail once their time is up (CREATE, SUSPEND, RESUME, DELETE).",
            default=[],
            schema=properties.Schema(
                properties.Schema.STRING,
                constraints=[constraints.AllowedValues([*ACTIONS, *(a.lower() for a in ACTIONS)])],
            ),
        ),
        PUBLIC_IP: properties.Schema(
            properties.Schema.STRING, "What the public_ip attribute reports.", default="127.0.0.1"
        ),
    }

    attributes_schema = {
        PUBLIC_IP_ATTR: attributes.Schema("The server's address.", type=attributes.Schema.STRING),
        SERVER_ID: attributes.Schema("The fake server's id.", type=attributes.Schema.STRING),
        PRIVATE_KEY: attributes.Schema("ed25519 private key, OpenSSH format.", type=attributes.Schema.STRING),
        PUBLIC_KEY: attributes.Schema(
            "ed25519 public key, authorized_keys format.", type=attributes.Schema.STRING
        ),
        SUSPEND_COUNT: attributes.Schema(
            "Completed suspends.", type=attributes.Schema.INTEGER, cache_mode=attributes.Schema.CACHE_NONE
        ),
        RESUME_COUNT: attributes.Schema(
            "Completed resumes.", type=attributes.Schema.INTEGER, cache_mode=attributes.Schema.CACHE_NONE
        ),
    }

    def _start(self, action: str) -> float:
        """The cookie Heat hands back to check_*_complete: when the action is done (epoch seconds)."""
        secs = float(self.properties[f"{action.lower()}_secs"] or 0)
        LOG.info("LabServer %s: %s takes %.1fs", self.name, action, secs)
        return time.time() + secs

    def _done(self, action: str, deadline: Any) -> bool:
        # The cookie can come back as a string after a round trip through the engine.
        if time.time() < float(deadline):
            return False
        if action in {a.upper() for a in self.properties[self.FAIL_ON]}:
            raise exception.Error(f"LabServer {self.name}: {action} failed as asked (fail_on)")
        return True

    def _bump(self, key: str) -> None:
        self.data_set(key, str(int(self.data().get(key, "0")) + 1), redact=False)

    def handle_create(self) -> float:
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
        public = (
            key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        self.data_set("private_key", private, redact=True)
        self.data_set("public_key", public, redact=False)
        self.resource_id_set(self.physical_resource_name())
        return self._start("CREATE")

    def check_create_complete(self, deadline: Any) -> bool:
        return self._done("CREATE", deadline)

    # Counted where Heat calls exactly once per action: a busy engine may ask
    # check_*_complete again after it said done.
    def handle_suspend(self) -> float:
        self._bump("suspend_count")
        return self._start("SUSPEND")

    def check_suspend_complete(self, deadline: Any) -> bool:
        return self._done("SUSPEND", deadline)

    def handle_resume(self) -> float:
        self._bump("resume_count")
        return self._start("RESUME")

    def check_resume_complete(self, deadline: Any) -> bool:
        return self._done("RESUME", deadline)

    def handle_delete(self) -> float:
        return self._start("DELETE")

    def check_delete_complete(self, deadline: Any) -> bool:
        return self._done("DELETE", deadline)

    def _resolve_attribute(self, name: str) -> Any:
        data = self.data()
        if name == self.PUBLIC_IP_ATTR:
            return self.properties[self.PUBLIC_IP]
        if name == self.SERVER_ID:
            return self.resource_id
        if name in (self.SUSPEND_COUNT, self.RESUME_COUNT):
            return int(data.get(name, "0"))
        return data.get(name)

    def get_reference_id(self) -> str | None:
        return self.resource_id


def resource_mapping() -> dict[str, type[resource.Resource]]:
    return {"LabXBlock::Test::Server": LabServer}
