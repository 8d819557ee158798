"""labxblock.conf: the providers' price per lab-hour and the site's currency (usage reports)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from labxblock.conf import LabSettingsError
from tests.unit.test_conf import load, valid


def with_price(value: object) -> dict:
    raw = valid()
    raw["providers"]["default"]["price_per_hour"] = value
    return raw


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (0, Decimal(0)), (2, Decimal(2)), ("0.125", Decimal("0.125")), (0.5, Decimal("0.5")),
])
def test_price_per_hour_is_kept_as_a_decimal(value, expected) -> None:
    settings = load(with_price(value))
    assert settings.providers["default"].price_per_hour == expected
    assert "price_per_hour" not in settings.providers["default"].options  # not passed to the provider


@pytest.mark.parametrize("value", [-1, "-0.1", "cheap", True, [1], "NaN", "Infinity"])
def test_bad_price_names_the_full_key(value) -> None:
    with pytest.raises(LabSettingsError, match=r"^labxblock\.providers\.default\.price_per_hour: expected "
                                               r"a number ≥ 0 \(a price per lab-hour\) or null"):
        load(with_price(value))


def test_currency_defaults_to_usd_and_takes_an_iso_code() -> None:
    assert load(valid()).currency == "USD"
    assert load({**valid(), "currency": "EUR"}).currency == "EUR"


@pytest.mark.parametrize("value", ["eur", "EURO", "", 978, None])
def test_bad_currency_names_the_key(value) -> None:
    with pytest.raises(LabSettingsError, match=r"^labxblock\.currency: expected a three-letter ISO 4217"):
        load({**valid(), "currency": value})
