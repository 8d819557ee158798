"""A lab's host key in the form each consumer wants (gateway.hostkeys)."""

from __future__ import annotations

import pytest

from labxblock.gateway.hostkeys import HostKeyError, for_guacd, parse_host_keys

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"  # short, but the type inside the blob is what is checked


@pytest.mark.parametrize(
    "text",
    [ED, f"lab.example.org {ED}", f"[10.0.0.5]:2222 {ED} root@lab", f"10.0.0.5,lab {ED}\n"],
    ids=["bare", "known-hosts", "host-port-comment", "several-names"],
)
def test_every_form_gives_the_bare_key(text):
    assert [k.bare for k in parse_host_keys(text)] == [ED]


def test_guacd_gets_one_line_for_the_address_and_port_it_connects_to():
    keys = parse_host_keys(f"{RSA}\n# a comment\n{ED}")
    assert for_guacd(keys, "10.0.0.5", 22) == f"10.0.0.5 {ED}"  # ed25519 preferred, plain host on 22
    assert for_guacd(keys, "10.0.0.5", 2222) == f"[10.0.0.5]:2222 {ED}"
    assert for_guacd(keys, "fd00::5", 2222) == f"[fd00::5]:2222 {ED}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("ssh-ed25519", "expected"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("ssh-rsa " + ED.split()[1], "of type 'ssh-ed25519', not 'ssh-rsa'"),
        (f"@cert-authority *.example.org {ED}", "markers"),
    ],
)
def test_unreadable_keys_are_refused_without_quoting_them(text, message):
    with pytest.raises(HostKeyError, match=message) as refused:
        parse_host_keys(text)
    assert "AAAA" not in str(refused.value)
