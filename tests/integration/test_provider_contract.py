"""The provider contract, run against the HTTP cloud fake, real Keystone + Heat and the local provider.

What any caller of a provider relies on: create is accepted and then observed
CREATING → READY with the template's outputs; suspend/resume; list by tag;
delete (twice is fine); failures and missing stacks reported in our own words.
The tests poll (bounded) — the provider itself never does. Fault injection,
which real Heat cannot do on demand, is in test_provider_faults.py.
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
    StackInfo,
    StackRef,
    StackSpec,
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

    def spec(self, template: str = "", tag: str = "", wait: int = 3, **params: str) -> StackSpec:
        """A stack of ``template`` (the good one), whose create takes ``wait`` seconds."""
        template = template or self.good_template
        name = f"lxb-contract-{uuid.uuid4().hex[:12]}"
        return StackSpec(name=name, template=template % {"wait": wait} if "%(" in template else template,
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


def test_suspend_or_resume_made_again_is_done_not_an_error(backend: Backend) -> None:
    """A call reissued after the first landed (its answer was lost) must do no harm."""
    provider = backend.provider
    ref = backend.create(backend.spec(wait=0))
    assert backend.wait(ref, {State.READY, State.FAILED})[0].state == State.READY
    provider.suspend(ref)
    assert backend.wait(ref, {State.SUSPENDED, State.FAILED})[0].state == State.SUSPENDED
    provider.suspend(ref)  # again
    assert provider.get(ref).state == State.SUSPENDED
    provider.resume(ref)
    assert backend.wait(ref, {State.READY, State.FAILED})[0].state == State.READY
    provider.resume(ref)  # again
    info, seen = backend.wait(ref, {State.READY, State.FAILED})
    assert info.state == State.READY and seen == [State.READY]


def test_busy_list_holds_the_stacks_in_progress_only(backend: Backend) -> None:
    """What the engine follows in-flight labs with: its cost grows with stacks in progress, not all."""
    tag = f"lxb-{uuid.uuid4().hex[:10]}"
    slow = backend.create(backend.spec(tag=tag, wait=20))
    quick = backend.create(backend.spec(tag=tag, wait=0))
    assert backend.wait(quick, {State.READY, State.FAILED})[0].state == State.READY
    busy = {info.ref.name: info for info in backend.provider.list_busy(tag)}
    assert set(busy) == {slow.name}
    assert busy[slow.name].state == State.CREATING and busy[slow.name].ref.data["id"] == slow.data["id"]
    assert {info.ref.name for info in backend.provider.list(tag)} == {slow.name, quick.name}
    assert backend.provider.list_busy(f"lxb-{uuid.uuid4().hex[:10]}") == []


def test_status_is_the_state_of_get(backend: Backend) -> None:
    ref = backend.create(backend.spec(wait=0))
    info, _ = backend.wait(ref, {State.READY, State.FAILED})
    status = backend.provider.status(ref)
    assert (status.ref, status.state, status.raw_status) == (ref, info.state, backend.ready_status)
    assert backend.provider.status(StackRef(f"lxb-missing-{uuid.uuid4().hex[:8]}")).state == State.DELETED


def test_status_leaves_the_outputs_unresolved(cloud_backend: Backend) -> None:
    """Heat resolves outputs only when asked: the engine's reads of in-flight labs do not ask."""
    ref = cloud_backend.create(cloud_backend.spec(wait=0))
    assert cloud_backend.wait(ref, {State.READY, State.FAILED})[0].outputs["public_ip"]
    assert cloud_backend.provider.status(ref).outputs == {}


def test_a_delete_during_a_create_is_seen_deleting_never_failed(backend: Backend) -> None:
    """Heat first marks the create it stops CREATE_FAILED ("Stack CREATE cancelled"): not a failure."""
    ref = backend.create(backend.spec(wait=30))
    assert backend.provider.get(ref).state == State.CREATING
    backend.provider.delete(ref)
    seen: list[tuple[State, str]] = []
    deadline = time.monotonic() + backend.timeout
    while not seen or seen[-1][0] != State.DELETED:
        info = backend.provider.status(ref)
        if not seen or seen[-1] != (info.state, info.raw_status):
            seen.append((info.state, info.raw_status))
        assert time.monotonic() < deadline, f"{ref.name} not deleted: {seen}"
        time.sleep(0.02)
    assert {state for state, _ in seen} <= {State.CREATING, State.DELETING, State.DELETED}, seen
    print(f"\nstatuses seen deleting a stack mid-create: {[raw for _, raw in seen]}")


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


def test_validate_accepts_the_good_template_and_names_the_line_of_a_yaml_error(backend: Backend) -> None:
    template = backend.good_template % {"wait": 0}
    assert backend.provider.validate(template, None, ("run",)) == []
    broken = template.replace("outputs:\n", "outputs:\n\tbroken: 1\n", 1)  # YAML allows no tab there
    [problem] = backend.provider.validate(broken, None, ("run",))
    assert broken.splitlines()[problem.line - 1] == "\tbroken: 1" and problem.column == 1, problem
    assert "found character '\\t' that cannot start any token" in problem.message
    assert "<unicode string>" not in problem.message  # the quoted snippet is cut: the line is apart
    assert backend.created == []  # nothing was created to find out


def test_a_stack_made_without_our_tag_is_tagged_in_place(backend: Backend) -> None:
    """An adopted stack (another system made it, untagged) joins the tag's lists, its resources as they were:
    on Heat an update that changes nothing but the tags, which a suspended stack is refused."""
    tag = f"lxb-{uuid.uuid4().hex[:10]}"
    provider = backend.provider
    ref = backend.create(backend.spec(tag="lxb-other", wait=0))
    before = backend.wait(ref, {State.READY, State.FAILED})[0]
    assert before.state == State.READY, before.reason
    resources = _resources(backend, ref)
    if not provider.add_tags(ref, (tag,)):
        assert backend.kind == "local" and provider.list(tag) == []  # not supported: left as it is
        return
    deadline = time.monotonic() + backend.timeout
    while (info := provider.get(ref)).raw_status != "UPDATE_COMPLETE":  # Heat updates the stack…
        assert info.state in (State.READY, State.CREATING) and time.monotonic() < deadline, info
        time.sleep(backend.interval)
    assert info.state == State.READY and set(info.tags) == {"lxb-other", tag}
    assert info.outputs == before.outputs  # …but builds nothing again: the random password is the same
    assert _resources(backend, ref) == resources
    assert [(i.ref, i.state) for i in provider.list(tag)] == [(ref, State.READY)]
    assert provider.add_tags(ref, (tag,))  # tagged already: nothing to do
    assert provider.get(ref).raw_status == "UPDATE_COMPLETE"

    provider.suspend(ref)
    assert backend.wait(ref, {State.SUSPENDED, State.FAILED})[0].state == State.SUSPENDED
    with pytest.raises(PermanentError, match="suspended"):
        provider.add_tags(ref, ("lxb-another",))


def _resources(backend: Backend, ref: StackRef) -> list[tuple[str, str, str]]:
    """Each resource's name, physical id and creation time (real Heat only: the fake keeps none)."""
    if backend.name != "heat":
        return []
    heat = backend.provider.heat  # type: ignore[attr-defined]
    return sorted((r.resource_name, r.physical_resource_id, r.creation_time)
                  for r in heat.resources.list(f"{ref.name}/{ref.data['id']}"))
