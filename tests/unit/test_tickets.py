"""Tickets: forged, tampered, expired, replayed and other-learner tickets are refused."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from labxblock import tickets
from labxblock.tickets import (
    ReplayGuard,
    ReplayGuardFull,
    TicketExpired,
    TicketInvalid,
    TicketReplayed,
    TicketWrongLearner,
    TicketWrongStack,
    iframe_url,
    mint_ticket,
    verify_ticket,
)

KEY = tickets.generate_key()
T0 = 1_700_000_000.0
KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"


def mint(keys=(KEY,), **overrides) -> str:
    kwargs = dict(
        learner_id="learner-a",
        stack_name="lab-a",
        protocol="ssh",
        host="10.0.0.5",
        port=2222,
        username="training",
        private_key=KEY_TEXT,
        read_only=False,
        display={"font-size": 14, "color-scheme": "gray-black"},
        now=T0,
    )
    kwargs.update(overrides)
    return mint_ticket(list(keys), **kwargs)


def verify(token: str, *, keys=(KEY,), guard=None, now=T0 + 1, **kw):
    kw.setdefault("stack_name", "lab-a")
    guard = guard if guard is not None else ReplayGuard()  # an empty guard is falsy
    return verify_ticket(list(keys), token, replay_guard=guard, now=now, **kw)


def test_round_trip_carries_every_field():
    t = verify(mint(password="pw", host_key="ssh-ed25519 AAAA", read_only=True), learner_id="learner-a")
    assert (t.learner_id, t.stack_name, t.protocol, t.host, t.port, t.username) == (
        "learner-a",
        "lab-a",
        "ssh",
        "10.0.0.5",
        2222,
        "training",
    )
    assert t.private_key == KEY_TEXT and t.password == "pw" and t.host_key == "ssh-ed25519 AAAA"
    assert t.read_only is True
    assert dict(t.display) == {"font-size": "14", "color-scheme": "gray-black"}
    assert t.issued_at == T0


def test_secrets_are_not_in_repr_or_the_token_text():
    token = mint(password="hunter2-secret")
    assert "hunter2" not in token and "BEGIN OPENSSH" not in token
    t = verify(token)
    assert "hunter2" not in repr(t) and "OPENSSH" not in repr(t)


def test_forged_ticket_with_another_key_is_refused():
    forged = mint(keys=[Fernet.generate_key().decode()])
    with pytest.raises(TicketInvalid):
        verify(forged)


def test_garbage_is_refused():
    for junk in ["", "not-a-ticket", "gAAAAA" + "A" * 100, "é"]:
        with pytest.raises(TicketInvalid):
            verify(junk)


def test_tampered_ticket_is_refused():
    raw = bytearray(base64.urlsafe_b64decode(mint()))
    raw[40] ^= 0x01  # flip one ciphertext bit
    with pytest.raises(TicketInvalid):
        verify(base64.urlsafe_b64encode(bytes(raw)).decode())


def test_ticket_forged_with_right_key_but_foreign_payload_is_refused():
    # Authentic bytes that are not our payload format (e.g. another app's Fernet token).
    token = Fernet(KEY).encrypt_at_time(b'{"v": 1, "id": 5}', int(T0)).decode()
    with pytest.raises(TicketInvalid):
        verify(token)


def test_expired_ticket_is_refused():
    token = mint()
    verify(token, now=T0 + 60)  # still valid at the limit
    with pytest.raises(TicketExpired):
        verify(mint(), now=T0 + 61)


def test_the_tickets_own_ttl_is_honoured():
    token = mint(ttl=10)
    assert verify(token, now=T0 + 10).ttl == 10  # still valid at its own limit
    with pytest.raises(TicketExpired):
        verify(mint(ttl=10), now=T0 + 11)


@pytest.mark.parametrize("ttl", [0, 61, 1.5, True])
def test_ttl_must_be_one_to_sixty_seconds(ttl):
    with pytest.raises(ValueError, match="ttl"):
        mint(ttl=ttl)


def test_a_ttl_over_sixty_in_a_forged_payload_is_capped():
    payload = json.dumps({
        "v": 1, "id": "x" * 22, "lrn": "learner-a", "stk": "lab-a", "pro": "ssh", "hst": "10.0.0.5",
        "prt": 22, "usr": "u", "ro": False, "ttl": 3600, "dsp": {},
    }).encode()  # fmt: skip
    token = Fernet(KEY).encrypt_at_time(payload, int(T0)).decode()
    assert verify(token, now=T0 + 60).ttl == 60
    with pytest.raises(TicketExpired):
        verify(token, now=T0 + 61)


def test_open_claim_and_binding_are_separate_steps():
    token = mint()
    ticket = tickets.open_ticket([KEY], token, now=T0 + 1)
    assert ticket.remember_until == T0 + 60 + 60
    with pytest.raises(TicketWrongStack):
        tickets.check_binding(ticket, stack_name="lab-b")
    assert tickets.check_binding(ticket, stack_name="lab-a", learner_id="learner-a") is ticket


def test_replayed_ticket_is_refused():
    guard = ReplayGuard()
    token = mint()
    verify(token, guard=guard)
    with pytest.raises(TicketReplayed):
        verify(token, guard=guard, now=T0 + 2)


def test_other_learner_ticket_is_refused():
    with pytest.raises(TicketWrongLearner):
        verify(mint(learner_id="learner-b"), learner_id="learner-a")


def test_ticket_for_another_stack_is_refused():
    with pytest.raises(TicketWrongStack):
        verify(mint(learner_id="learner-b", stack_name="lab-b"), stack_name="lab-a")


def test_key_rotation_first_key_mints_all_verify():
    old, new = tickets.generate_key(), tickets.generate_key()
    verify(mint(keys=[old]), keys=[new, old])
    token = mint(keys=[new, old])
    with pytest.raises(TicketInvalid):
        verify(token, keys=[old])


def test_replay_guard_forgets_expired_ids_and_is_bounded():
    guard = ReplayGuard(max_entries=2)
    assert guard.claim("a", expires_at=10, now=0)
    assert not guard.claim("a", expires_at=10, now=5)
    assert guard.claim("b", expires_at=20, now=5)
    with pytest.raises(ReplayGuardFull):
        guard.claim("c", expires_at=20, now=5)
    assert guard.claim("c", expires_at=30, now=11)  # "a" expired and was forgotten
    assert len(guard) == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"protocol": "telnet"},
        {"port": 0},
        {"port": 70000},
        {"port": True},
        {"host": ""},
        {"learner_id": ""},
        {"display": {"hostname": "evil"}},
        {"display": {"font-size": [1]}},
        {"display": {"security": "none"}},
        {"display": {"resize-method": "stretch"}},
        {"display": {"cert-fingerprints": "not a fingerprint"}},
        {"display": {"font-name": "x\ny"}},
    ],
)
def test_mint_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        mint(**bad)


def test_rdp_options_round_trip():
    options = {"security": "nla", "ignore-cert": True, "resize-method": "display-update",
               "cert-fingerprints": "sha256:" + ":".join(["ab"] * 32)}
    t = verify(mint(protocol="rdp", display=options))
    assert t.display == {**options, "ignore-cert": "true"}


def test_rdp_options_for_a_lab():
    fp = "sha256:" + ":".join(["ab"] * 32)
    assert tickets.rdp_options(security="any", ignore_cert=True) == {
        "security": "any", "resize-method": "display-update", "ignore-cert": "true"}
    assert tickets.rdp_options(security="tls", ignore_cert=False)["ignore-cert"] == "false"
    # Fingerprints from the template pin the certificate, whatever ignore_cert says.
    pinned = tickets.rdp_options(security="nla", ignore_cert=True, cert_fingerprints=f" {fp} ,")
    assert (pinned["ignore-cert"], pinned["cert-fingerprints"]) == ("false", fp)
    # Malformed ones accept nothing rather than everything; an unknown security is negotiated.
    broken = tickets.rdp_options(security="weird", ignore_cert=True, cert_fingerprints="md5:zz")
    assert broken == {"security": "any", "resize-method": "display-update", "ignore-cert": "false"}
    verify(mint(protocol="rdp", display=broken))  # every result is a valid ticket


def test_iframe_url_puts_ticket_in_fragment_only():
    url = iframe_url("https://lab.example.org/gw/", "console", "TOKEN", stack_name="lab a/1")
    assert url == "https://lab.example.org/gw/console/lab%20a%2F1/#ticket=TOKEN"
    ro = iframe_url("https://x", "guac", "T=", stack_name="s", read_only=True)
    assert ro == "https://x/guac/s/#ticket=T=&ro=1"
    with pytest.raises(ValueError):
        iframe_url("https://x", "../x", "T", stack_name="s")


def test_importable_without_django():
    code = "import sys, labxblock.tickets; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
