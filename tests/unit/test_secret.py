"""Secret: the lab's keys and passwords are their text everywhere except in a repr."""

from __future__ import annotations

import json
import pprint
from dataclasses import dataclass

from labxblock.secret import HIDDEN, Secret, hide

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
