"""Lab secrets at rest: a model field that stores a Fernet token, never plaintext.

Keys (``secret_keys``: first encrypts, all decrypt) are read at first use, not at
import. Tokens are decrypted when the attribute is read, not when the row loads:
a missing key breaks only code that needs the secret, and an unread secret is
saved back as the same token. What a read returns is a :class:`~labxblock.secret.Secret`,
so the plaintext never shows in a ``repr`` (error reports, logs of locals).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from labxblock.conf import get_settings
from labxblock.secret import hide


class SecretUnavailable(Exception):
    """A stored secret cannot be decrypted with any key in ``labxblock.secret_keys``."""


class Sealed(str):
    """A Fernet token as stored in the database (marks 'not decrypted yet')."""

    __slots__ = ()

    def __repr__(self) -> str:  # keep tokens out of tracebacks and logs
        return "Sealed(...)"


def fernet() -> MultiFernet:
    """The MultiFernet for the current ``secret_keys`` (rebuilt when they change)."""
    return _fernet_for(get_settings().secret_keys)


@functools.cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def unseal(token: str, *, what: str) -> str:
    """Decrypt with any configured key; ``what`` names the field in the error."""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnavailable(
            f"{what}: cannot decrypt: the key that encrypted it is not in "
            "labxblock.secret_keys (was a key removed before re-encrypting?)"
        ) from None


def reseal(token: str, *, what: str) -> Sealed:
    """Re-encrypt a token with the newest key (for key rotation)."""
    try:
        return Sealed(fernet().rotate(token.encode()).decode())
    except InvalidToken:
        raise SecretUnavailable(f"{what}: cannot re-encrypt: no configured key decrypts it") from None


class _SecretAttribute(DeferredAttribute):
    """Decrypts on read (into a Secret); keeps what the database returned until then."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if instance is not None and isinstance(value, Sealed):
            return hide(unseal(value, what=f"{type(instance).__name__}.{self.field.name} (id {instance.pk})"))
        return hide(value) if instance is not None else value

    def __set__(self, instance: Any, value: Any) -> None:
        # A data descriptor, so __get__ runs even once the value is in __dict__.
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """A text field stored as a Fernet token; "" stays "" (no secret to hide)."""

    descriptor_class = _SecretAttribute

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        # The raw value: an unread secret goes back as the same token, undecrypted.
        return model_instance.__dict__.get(self.attname)

    def value_from_object(self, obj: Any) -> Any:
        # Serializers (dumpdata) and model_to_dict get the token, never plaintext.
        return obj.__dict__.get(self.attname)

    def to_python(self, value: Any) -> Any:
        # A token coming back from a dump (loaddata) must not be encrypted twice.
        if isinstance(value, str) and not isinstance(value, Sealed) and value.startswith("gAAAAA"):
            with contextlib.suppress(InvalidToken):
                fernet().decrypt(value.encode())
                return Sealed(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value or isinstance(value, Sealed):  # None, "" or an unread token
            return value if value is None else str(value)
        return fernet().encrypt(value.encode()).decode()

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return Sealed(value) if value else value
