"""The lab address policy: built-in refusals, the operator's networks, the most specific wins."""

from __future__ import annotations

import pytest

from labxblock.addresses import AddressPolicy, AddressRefused, parse_networks, resolve

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: the kernel connects to 127.0.0.1
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("not-an-ip", "not an IP address"),
    ],
)
def test_the_default_policy_refuses_addresses_no_lab_should_have(address: str, why: str) -> None:
    assert DEFAULT.refusal(address) == why
    with pytest.raises(AddressRefused, match="not allowed"):
        DEFAULT.check_address(address)


@pytest.mark.parametrize("address", ["203.0.113.7", "10.1.2.3", "192.168.0.20", "2001:db8::5"])
def test_the_default_policy_allows_ordinary_lab_addresses(address: str) -> None:
    assert DEFAULT.refusal(address) is None


def test_an_explicit_loopback_allowance_wins_over_the_built_in_refusal() -> None:
    demo = AddressPolicy(allowed=parse_networks(["127.0.0.0/8"], what="allowed_networks"))
    assert demo.refusal("127.0.0.1") is None
    assert demo.refusal("203.0.113.7") == "outside the allowed networks"
    assert demo.refusal("169.254.169.254") == "link-local (cloud metadata)"


def test_a_site_service_address_stays_refused_inside_a_wider_allowed_network() -> None:
    policy = AddressPolicy(
        allowed=parse_networks(["10.0.0.0/8"], what="a"), refused=parse_networks(["10.0.0.5"], what="r")
    )
    assert policy.refusal("10.0.0.6") is None
    assert policy.refusal("10.0.0.5") == "an address of this site's own services"
    explicit = AddressPolicy(allowed=parse_networks(["10.0.0.5/32"], what="a"), refused=policy.refused)
    assert explicit.refusal("10.0.0.5") is None  # a tie: the operator's explicit allowance wins


def test_a_host_name_passes_only_if_every_address_it_resolves_to_does() -> None:
    rebinding = {"lab.example": ["203.0.113.7", "127.0.0.1"], "ok.example": ["203.0.113.8"]}
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1 is not allowed: loopback"):
        DEFAULT.check("lab.example", 22, resolver=rebinding.__getitem__)
    assert DEFAULT.check("ok.example", 2222, resolver=rebinding.__getitem__) == ("203.0.113.8", 2222)


@pytest.mark.parametrize("port", [0, 65536, -1, "22", None, True, 22.0])
def test_a_port_outside_1_to_65535_is_refused_before_anything_connects(port: object) -> None:
    with pytest.raises(AddressRefused, match="not a port number"):
        DEFAULT.check("203.0.113.7", port)


def test_an_empty_or_unresolvable_host_is_refused_with_a_reason() -> None:
    with pytest.raises(AddressRefused, match="no address"):
        DEFAULT.check("  ", 22)
    with pytest.raises(AddressRefused, match="does not resolve"):
        DEFAULT.check("no-such-host.invalid", 22)


def test_literal_addresses_resolve_to_themselves_without_dns() -> None:
    assert resolve("203.0.113.7") == ["203.0.113.7"]
    assert resolve("::ffff:10.0.0.1") == ["10.0.0.1"]
    assert resolve("localhost")  # a real lookup through the system resolver


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "ten", "", "10.0.0.0/8/8"])
def test_a_bad_network_is_reported_by_its_position(bad: str) -> None:
    with pytest.raises(ValueError, match=r"allowed_networks\[1\]"):
        parse_networks(["10.0.0.0/8", bad], what="allowed_networks")
    with pytest.raises(ValueError, match="got a string"):
        parse_networks("10.0.0.0/8", what="allowed_networks")
