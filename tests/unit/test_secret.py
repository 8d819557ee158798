"""Secret: the lab's keys and passwords are their text everywhere except in a repr."""

from __future__ import annotations

import json
import pprint
from dataclasses import dataclass

from labxblock.secret import HIDDEN, Secret, hide, hide_outputs, is_secret_name

PASSWORD = "Tr0ub4dor&3-lab-password"


@dataclass
class Holder:
    password: str


def test_a_secret_is_its_text_for_every_use_but_repr() -> None:
    secret = Secret(PASSWORD)
    assert secret == PASSWORD and str(secret) == PASSWORD and f"{secret}" == PASSWORD
    assert json.loads(json.dumps({"pwd": secret})) == {"pwd": PASSWORD}
    assert PASSWORD.encode() == secret.encode()
    for shown in (repr(secret), f"{secret!r}", pprint.pformat({"k": [secret]}), repr(Holder(secret)),
                  pprint.pformat(Secret(PASSWORD * 20))):  # long values take another pprint path
        assert PASSWORD not in shown and HIDDEN in shown


def test_hide_wraps_text_once_and_leaves_empty_values_alone() -> None:
    assert type(hide(PASSWORD)) is Secret and hide(hide(PASSWORD)) == PASSWORD
    assert hide("") == "" and type(hide("")) is str and hide(None) is None


def test_outputs_are_hidden_by_the_default_rule_without_settings() -> None:
    outputs = {"public_ip": "192.0.2.7", "host_key": "ssh-ed25519 AAAA", "private_key": "k" * 40,
               "db_password": PASSWORD, "api_key": 1234, "empty_secret": "", "web_url": "http://lab.test/"}
    hidden = hide_outputs(outputs)
    assert hidden == {**outputs, "api_key": "1234"}  # still the values (a number as text, as stored)
    secret = [k for k, v in hidden.items() if isinstance(v, Secret)]
    assert secret == ["private_key", "db_password", "api_key"]
    assert PASSWORD not in repr(hidden) and "http://lab.test/" in repr(hidden)
    # The site's own rule: "check_private_key" stays secret whatever the operator lists.
    assert is_secret_name("check_private_key", ["*_token"]) and is_secret_name("api_token", ["*_token"])
    assert not is_secret_name("db_password", ["*_token"]) and not is_secret_name("host_key")
