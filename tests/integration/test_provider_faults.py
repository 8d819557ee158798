"""The openstack provider against a misbehaving cloud: the HTTP cloud fake's injected faults."""


from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from labxblock.lifecycle import State
from labxblock.providers.base import (
    QuotaExceeded,
    StackSpec,
    TemporaryError,
)
from labxblock.providers.openstack import OpenStackProvider
from tests.engine_harness import wait_for_stack
from tests.integration.test_provider_contract import FAILING_TEMPLATE


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
    wait_for_stack(provider, ref, State.READY)
    provider.suspend(ref)
    wait_for_stack(provider, ref, State.SUSPENDED)
    provider.resume(ref)
    wait_for_stack(provider, ref, State.READY)
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


@pytest.mark.parametrize("pool_size", [None, 8])
def test_concurrent_calls_share_a_pool_of_the_configured_size(fake: Any, pool_size: int | None,
                                                              caplog: Any) -> None:
    """40 threads at once (the calls worker runs 32) open at most the pool's connections, none thrown away."""
    from concurrent.futures import ThreadPoolExecutor

    provider = _provider(fake.provider_config, **({"pool_size": pool_size} if pool_size else {}))
    size = pool_size or 64
    http = provider.session().session
    for url in ("http://cloud.test/", "https://cloud.test/"):
        assert http.get_adapter(url).poolmanager.connection_pool_kw["maxsize"] == size
    assert provider.validator().http_client.session.session is http  # the validation client's too
    provider.list("lxb-warm")  # the token
    fake.configure(latency_seconds=0.3)  # every call in flight at once
    before = fake.counters()["connections"]
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"), ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: provider.list("lxb-pool"), range(40)))
    assert answers == [[]] * 40
    assert fake.counters()["connections"] - before <= min(size, 40)
    assert "Connection pool is full" not in caplog.text


def test_the_full_list_comes_in_pages_and_the_busy_list_costs_what_is_in_progress(fake: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from labxblock.providers.openstack import PAGE

    provider = _provider(fake.provider_config)
    tag = f"lxb-{uuid.uuid4().hex[:8]}"
    fake.configure(list_seconds_per_stack=0, delays={"create": 0})
    with ThreadPoolExecutor(max_workers=20) as pool:
        done = list(pool.map(lambda _: provider.create(_spec(tag=tag)), range(2 * PAGE + 10)))
    fake.configure(delays={"create": 60})
    busy = [provider.create(_spec(tag=tag)) for _ in range(3)]
    before = fake.counters()
    listed = provider.list(tag)
    assert {i.ref.name for i in listed} == {r.name for r in done + busy}  # every page, nothing twice
    assert len(listed) == len(done) + len(busy)
    after = fake.counters()
    assert after["stack_list"] - before.get("stack_list", 0) == 3  # a request a page of 100, none more
    assert provider.list_busy(tag) and {i.ref.name for i in provider.list_busy(tag)} == {r.name for r in busy}
    final = fake.counters()
    assert final["stack_list_busy"] == 2 and final["stacks_listed"] - after["stacks_listed"] == 6
    assert final["stack_list"] == after["stack_list"]  # kinds apart: the busy lists are not full ones


def test_a_list_costs_the_cloud_time_in_proportion_to_the_stacks_it_returns(fake: Any) -> None:
    provider = _provider(fake.provider_config)
    tag = f"lxb-{uuid.uuid4().hex[:8]}"
    for _ in range(20):
        provider.create(_spec(tag=tag))
    provider.list_busy("warm-up")  # authenticate first
    fake.configure(list_seconds_per_stack=0.05)
    started = time.monotonic()
    provider.list(tag)
    assert time.monotonic() - started >= 1.0  # 20 stacks at 50 ms
    started = time.monotonic()
    provider.list(f"lxb-{uuid.uuid4().hex[:8]}")
    assert time.monotonic() - started < 0.5


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
