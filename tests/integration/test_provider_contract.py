"""The provider contract, run against the HTTP cloud fake, real Keystone + Heat and the local provider.

What any caller of a provider relies on: create is accepted and then observed
CREATING → READY with the template's outputs; suspend/resume; list by tag;
delete (twice is fine); failures and missing stacks reported in our own words.
The tests poll (bounded) — the provider itself never does. Fault injection,
which real Heat cannot do on demand, is tested against the fake only, below.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from labxblock.lifecycle import State
from labxblock.providers.base import (
    PermanentError,
    Provider,
    ProviderError,
    QuotaExceeded,
    StackInfo,
    StackRef,
    StackSpec,
    TemporaryError,
)
from labxblock.providers.local import LocalProvider
from labxblock.providers.openstack import OpenStackProvider

RIG_KEYS = ("auth_url", "username", "password", "project_name", "user_domain_name",
            "project_domain_name", "region_name", "interface")
APP_KEYS = ("auth_url", "application_credential_id", "application_credential_secret", "region_name",
            "interface")

# Only resource types real Heat has built in, so the rig needs no Nova.
GOOD_TEMPLATE = """
heat_template_version: 2018-08-31
parameters:
  run:
    type: string
resources:
  password:
    type: OS::Heat::RandomString
    properties: {length: 16}
  key:
    type: OS::Heat::TestResource
    properties:
      value: "-----BEGIN OPENSSH PRIVATE KEY-----\\nfake\\n-----END OPENSSH PRIVATE KEY-----\\n"
      action_wait_secs: {create: %(wait)s}
  address:
    type: OS::Heat::Value
    properties: {value: 192.0.2.10}
outputs:
  public_ip: {value: {get_attr: [address, value]}}
  private_key: {value: {get_attr: [key, output]}}
  password: {value: {get_attr: [password, value]}}
  run: {value: {get_param: run}}
"""

FAILING_TEMPLATE = """
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
resources:
  broken:
    type: OS::Heat::TestResource
    properties: {fail: true}
"""


# The same stacks for the local provider: its SSH resource instead of TestResource.
LOCAL_GOOD_TEMPLATE = """
heat_template_version: 2018-08-31
parameters:
  run:
    type: string
resources:
  password:
    type: OS::Heat::RandomString
    properties: {length: 16}
  lab:
    type: LabXBlock::Local::SSH
    properties: {boot_seconds: %(wait)s}
outputs:
  public_ip: {value: {get_attr: [lab, public_ip]}}
  port: {value: {get_attr: [lab, port]}}
  private_key: {value: {get_attr: [lab, private_key]}}
  password: {value: {get_attr: [password, value]}}
  run: {value: {get_param: run}}
"""

# A real failure: sshd refuses to start on an unknown option.
LOCAL_FAILING_TEMPLATE = """
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
resources:
  broken:
    type: LabXBlock::Local::SSH
    properties: {sshd_options: {NoSuchOption: "yes"}}
"""


@dataclass
class Backend:
    """One cloud to run the contract against, and how patient to be with it."""

    name: str
    config: dict[str, Any]  # password auth
    app_config: dict[str, Any]  # application-credential auth, same project
    timeout: float  # seconds a transition may take
    interval: float  # seconds between polls
    created: list[StackRef] = field(default_factory=list)
    kind: str = "openstack"  # or "local"
    good_template: str = GOOD_TEMPLATE
    failing_template: str = FAILING_TEMPLATE
    ready_status: str = "CREATE_COMPLETE"  # the raw status words of a ready and a failed create
    failed_status: str = "CREATE_FAILED"

    def __post_init__(self) -> None:
        cls = LocalProvider if self.kind == "local" else OpenStackProvider
        self.provider: Provider = cls(self.name, self.config)

    def spec(self, template: str = "", tag: str = "", **params: str) -> StackSpec:
        template = template or self.good_template
        name = f"lxb-contract-{uuid.uuid4().hex[:12]}"
        return StackSpec(name=name, template=template % {"wait": 3} if "%(" in template else template,
                         parameters={"run": "run-1", **params}, tags=(tag or "lxb-test",))

    def create(self, spec: StackSpec) -> StackRef:
        ref = self.provider.create(spec)
        self.created.append(ref)
        return ref

    def wait(self, ref: StackRef, until: set[State]) -> tuple[StackInfo, list[State]]:
        """Poll get() until a state in ``until``; return it and every state seen on the way."""
        seen: list[State] = []
        deadline = time.monotonic() + self.timeout
        while True:
            info = self.provider.get(ref)
            if not seen or seen[-1] != info.state:
                seen.append(info.state)
            if info.state in until:
                return info, seen
            assert time.monotonic() < deadline, f"{ref.name} still {info.raw_status} ({seen})"
            time.sleep(self.interval)

    def wait_unlisted(self, tag: str, name: str) -> None:
        deadline = time.monotonic() + self.timeout
        while name in {info.ref.name for info in self.provider.list(tag)}:
            assert time.monotonic() < deadline, f"{name} still listed"
            time.sleep(self.interval)


def _rig_config(rig: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """Provider config from the rig fixture, whether it yields a mapping or an object."""
    if isinstance(rig, Mapping):
        return {key: rig[key] for key in keys if key in rig}
    return {key: getattr(rig, key) for key in keys if hasattr(rig, key)}


CLOUDS = ["fake", pytest.param("heat", marks=[pytest.mark.heat, pytest.mark.slow])]


@pytest.fixture(params=[*CLOUDS, "local"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from _backend(request)


@pytest.fixture(params=CLOUDS)
def cloud_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Only backends with credentials (the local provider has none)."""
    yield from _backend(request)


def _backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "local":
        root = request.getfixturevalue("tmp_path") / "labs"
        backend = Backend("local", {"root": str(root)}, {}, timeout=10, interval=0.05, kind="local",
                          good_template=LOCAL_GOOD_TEMPLATE, failing_template=LOCAL_FAILING_TEMPLATE,
                          ready_status="running", failed_status="exited")
    elif request.param == "fake":
        fake = request.getfixturevalue("cloud_fake")
        # Long enough that a get() right after an action sees it in progress.
        fake.configure(delays={"create": 0.5, "suspend": 0.3, "resume": 0.3, "delete": 0.3})
        backend = Backend("fake", fake.provider_config, fake.app_credential_config, timeout=10, interval=0.05)
    else:
        rig = request.getfixturevalue("openstack_rig")
        backend = Backend("heat", _rig_config(rig, RIG_KEYS), _rig_config(rig, APP_KEYS), timeout=90,
                          interval=0.5)
    yield backend
    for ref in backend.created:  # never leave stacks behind on a real cloud
        with contextlib.suppress(ProviderError):  # cleanup must not hide the test's own failure
            backend.provider.delete(ref)


def test_lab_lifecycle(backend: Backend) -> None:
    """create → CREATING → READY with outputs → suspend → resume → list → delete (twice)."""
    tag = f"lxb-{uuid.uuid4().hex[:10]}"
    provider = backend.provider
    ref = backend.create(backend.spec(tag=tag, run="run-42"))
    assert ref.data["id"]

    assert provider.get(ref).state == State.CREATING
    info, seen = backend.wait(ref, {State.READY, State.FAILED})
    assert info.state == State.READY, info.reason
    assert set(seen) <= {State.CREATING, State.READY}
    ipaddress.ip_address(info.outputs["public_ip"])  # raises if it is not an address
    assert "PRIVATE KEY" in info.outputs["private_key"]
    assert isinstance(info.outputs["password"], str) and len(info.outputs["password"]) >= 8
    assert info.outputs["run"] == "run-42"
    assert info.raw_status == backend.ready_status
    assert tag in info.tags

    provider.suspend(ref)
    info, seen = backend.wait(ref, {State.SUSPENDED, State.FAILED})
    assert info.state == State.SUSPENDED, info.reason
    assert set(seen) <= {State.READY, State.SUSPENDING, State.SUSPENDED}

    provider.resume(ref)
    info, seen = backend.wait(ref, {State.READY, State.FAILED})
    assert info.state == State.READY, info.reason
    assert set(seen) <= {State.SUSPENDED, State.RESUMING, State.READY}
    assert info.outputs["public_ip"]
    provider.after_resume(ref)  # no reboot_on_resume output: must do nothing, quietly

    listed = {i.ref.name: i for i in provider.list(tag)}
    assert set(listed) == {ref.name}
    assert listed[ref.name].state == State.READY
    assert listed[ref.name].ref.data["id"] == ref.data["id"]

    provider.delete(ref)
    info, _ = backend.wait(ref, {State.DELETED, State.FAILED})
    assert info.state == State.DELETED, info.reason
    backend.wait_unlisted(tag, ref.name)
    provider.delete(ref)  # already gone: done, not an error


def test_list_is_filtered_by_tag(backend: Backend) -> None:
    mine, theirs = f"lxb-{uuid.uuid4().hex[:10]}", f"lxb-{uuid.uuid4().hex[:10]}"
    a = backend.create(backend.spec(tag=mine))
    b = backend.create(backend.spec(tag=theirs))
    assert {i.ref.name for i in backend.provider.list(mine)} == {a.name}
    assert {i.ref.name for i in backend.provider.list(theirs)} == {b.name}
    assert backend.provider.list(f"lxb-{uuid.uuid4().hex[:10]}") == []


def test_failing_create_is_reported_failed_with_a_reason(backend: Backend) -> None:
    ref = backend.create(backend.spec(backend.failing_template))
    info, _ = backend.wait(ref, {State.READY, State.FAILED})
    assert info.state == State.FAILED
    assert info.raw_status == backend.failed_status
    assert "broken" in info.reason  # names the resource that failed, for the operator
    assert info.outputs == {}
    backend.provider.delete(ref)
    info, _ = backend.wait(ref, {State.DELETED})


def test_create_retried_with_the_same_name_returns_the_same_stack(backend: Backend) -> None:
    spec = backend.spec()
    first = backend.create(spec)
    assert backend.create(spec) == first  # e.g. after the first answer was lost to a timeout
    assert backend.provider.get(StackRef(spec.name)).ref == first  # a name-only ref learns the id


def test_application_credential_auth(cloud_backend: Backend) -> None:
    backend = cloud_backend
    tag = f"lxb-{uuid.uuid4().hex[:10]}"
    assert OpenStackProvider("app", backend.app_config).list(tag) == []
    wrong = OpenStackProvider("app", {**backend.app_config, "application_credential_secret": "nope"})
    with pytest.raises(PermanentError, match="credentials") as caught:
        wrong.list(tag)
    assert "nope" not in str(caught.value)


def test_wrong_password_is_permanent_and_says_check_credentials(cloud_backend: Backend) -> None:
    backend = cloud_backend
    provider = OpenStackProvider("pw", {**backend.config, "password": "not-the-password"})
    with pytest.raises(PermanentError, match="credentials") as caught:
        provider.create(backend.spec())
    assert "not-the-password" not in str(caught.value)


def test_missing_stack_reads_as_deleted_and_deletes_as_done(backend: Backend) -> None:
    ghost = StackRef(f"lxb-missing-{uuid.uuid4().hex[:8]}", {"id": str(uuid.uuid4())})
    assert backend.provider.get(ghost).state == State.DELETED
    assert backend.provider.get(StackRef(ghost.name)).state == State.DELETED  # by name only
    backend.provider.delete(ghost)


def test_bad_template_is_a_permanent_error_with_the_clouds_explanation(backend: Backend) -> None:
    spec = StackSpec(name=f"lxb-bad-{uuid.uuid4().hex[:8]}", template="resources: {}\n",
                     parameters={"run": "x"}, tags=("lxb-test",))
    with pytest.raises(PermanentError, match=r"(?i)template.*version"):
        backend.create(spec)


# --- faults: the fake only ---------------------------------------------------------------


@pytest.fixture
def fake(cloud_fake: Any) -> Any:
    cloud_fake.configure(delays={"create": 0.1, "suspend": 0.1, "resume": 0.1, "delete": 0.1})
    return cloud_fake


def _provider(config: Mapping[str, Any], **overrides: Any) -> OpenStackProvider:
    return OpenStackProvider("os-test", {**config, **overrides})


def _spec(template: str = FAILING_TEMPLATE.replace("fail: true", "value: x"), tag: str = "lxb-test",
          name: str = "") -> StackSpec:
    return StackSpec(name=name or f"lxb-{uuid.uuid4().hex[:12]}", template=template,
                     parameters={"run": "r"}, tags=(tag,))


def _wait(provider: OpenStackProvider, ref: StackRef, state: State, timeout: float = 5) -> StackInfo:
    deadline = time.monotonic() + timeout
    while (info := provider.get(ref)).state != state:
        assert time.monotonic() < deadline, info
        time.sleep(0.02)
    return info


def test_server_error_is_temporary_and_honours_retry_after(fake: Any) -> None:
    provider = _provider(fake.provider_config)
    ref = provider.create(_spec())
    fake.configure(fail_next=1, fail_next_status=503, retry_after=7)
    with pytest.raises(TemporaryError) as caught:
        provider.get(ref)
    assert caught.value.delay == 7
    fake.configure(fail_next=1, fail_next_status=500, retry_after=None)
    with pytest.raises(TemporaryError) as caught:
        provider.suspend(ref)
    assert caught.value.delay > 0
    assert provider.get(ref).ref == ref  # the next call works again


def test_timeout_is_temporary_and_does_not_wait_for_the_cloud(fake: Any) -> None:
    provider = _provider(fake.provider_config, read_timeout=0.5)
    provider.list("warm-up")  # authenticate first, so only the Heat call is slow
    fake.configure(timeout_rate=1.0, timeout_seconds=3)
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="timed out"):
        provider.list("lxb-test")
    assert time.monotonic() - started < 2


def test_unreachable_cloud_is_temporary(fake: Any) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = _provider(fake.provider_config, auth_url=f"http://127.0.0.1:{port}/v3")
    with pytest.raises(TemporaryError, match="unreachable"):
        provider.list("lxb-test")


def test_quota_refusal_is_quota_exceeded(fake: Any) -> None:
    provider = _provider(fake.provider_config)
    fake.configure(quota_exceeded=True)
    with pytest.raises(QuotaExceeded, match="maximum stacks"):
        provider.create(_spec())
    fake.configure(quota_exceeded=False, max_stacks=1)
    provider.create(_spec())
    with pytest.raises(QuotaExceeded):
        provider.create(_spec())


def test_delete_of_a_stack_the_cloud_no_longer_knows_is_done(fake: Any) -> None:
    provider = _provider(fake.provider_config)
    ref = provider.create(_spec())
    fake.configure(not_found=[ref.name])
    provider.delete(ref)
    assert provider.get(ref).state == State.DELETED
    assert fake.counters()["stack_delete"] == 1


def test_conflicting_action_is_temporary(fake: Any) -> None:
    provider = _provider(fake.provider_config)
    fake.configure(delays={"create": 5})
    ref = provider.create(_spec())
    with pytest.raises(TemporaryError, match="409"):
        provider.suspend(ref)  # Heat refuses while the create is in progress


def test_expired_or_revoked_token_is_renewed_transparently(fake: Any) -> None:
    provider = _provider(fake.provider_config)
    provider.list("lxb-test")
    provider.list("lxb-test")
    assert fake.counters()["auth"] == 1  # one token serves many calls
    fake.configure(token_ttl_seconds=0.2)  # for tokens issued from now on
    fake.revoke_tokens()
    provider.list("lxb-test")  # refused once, re-authenticated, answered
    time.sleep(0.3)
    provider.list("lxb-test")  # that token expired: the same again
    counts = fake.counters()
    assert counts["auth"] == 3 and counts["token_refused"] == 2
    assert counts["stack_list"] == 4


SERVERS_TEMPLATE = """
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
resources:
  vm1: {type: OS::Nova::Server, properties: {image: x, flavor: y}}
  vm2: {type: OS::Nova::Server, properties: {image: x, flavor: y}}
outputs:
  public_ip: {value: {get_attr: [vm1, first_address]}}
  reboot_on_resume: {value: %s}
"""


@pytest.mark.parametrize("reboot", [True, False])
def test_reboot_on_resume_reboots_every_server_once(fake: Any, reboot: bool) -> None:
    # Our Heat rig has no Nova, so this path is only tested here.
    provider = _provider(fake.provider_config)
    ref = provider.create(_spec(SERVERS_TEMPLATE % str(reboot).lower()))
    _wait(provider, ref, State.READY)
    provider.suspend(ref)
    _wait(provider, ref, State.SUSPENDED)
    provider.resume(ref)
    _wait(provider, ref, State.READY)
    provider.after_resume(ref)
    reboots = fake.reboots()
    assert sorted(reboots.values()) == ([1, 1] if reboot else [])


def test_many_concurrent_creates_are_all_listed(fake: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    provider = _provider(fake.provider_config)
    tag = f"lxb-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=50) as pool:
        refs = list(pool.map(lambda _: provider.create(_spec(tag=tag)), range(300)))
    listed = provider.list(tag)
    assert {i.ref.name for i in listed} == {r.name for r in refs}
    assert fake.counters()["auth"] <= 50  # threads share a session, not a login each


def test_fake_in_another_process_is_driven_over_http() -> None:
    import json
    import subprocess
    import sys

    from tests.cloudfake.control import FakeControl

    proc = subprocess.Popen([sys.executable, "-m", "tests.cloudfake", "--port", "0",
                             "--config", json.dumps({"delays": {"create": 0}})],
                            stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(proc.stdout.readline())
        control = FakeControl(started["base_url"])
        provider = _provider(started["provider_config"])
        ref = provider.create(_spec())
        control.configure(fail_next=2, fail_next_status=502)
        for _ in range(2):
            with pytest.raises(TemporaryError, match="502"):
                provider.get(ref)
        assert provider.get(ref).state == State.READY
        assert control.counters()["injected_502"] == 2
        control.reset()
        assert provider.get(ref).state == State.DELETED  # reset forgot the stack
    finally:
        proc.terminate()
        proc.wait(timeout=10)
