"""Secrets we must use, not only check, kept encrypted at rest: webhook keys and SkyPortal tokens.

* :class:`SecretBox` holds the keys: ``cryptography``'s Fernet (AES-128-CBC with an HMAC-SHA256
  tag) behind ``MultiFernet``, so several keys can be given; the first encrypts, every one decrypts
  (key rotation: put the new key first, run ``cpcs secrets rotate``, then drop the old one).
* :class:`EncryptedString` is the column type: the database only ever sees the Fernet token; the
  ORM attribute is the plain text. The keys of a column come from its engine
  (:func:`bind_secret_box`), so processes and tests with different keys never mix them.
* :func:`resolve_secret_box` says where the keys come from: ``CPCS_SECRET_KEY`` (or the file
  ``CPCS_SECRET_KEY_FILE`` names); else, for SQLite only, the file ``secret.key`` beside the
  database file (the data folder), generated once with mode 0600. PostgreSQL is shared by
  several processes, which must all hold the same key: there an unset key is an error.

Encryption protects a copied database (a dump, a backup of the file) without the key; a reader
of the data folder that holds the generated key file reads both.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Engine, Text, make_url
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from cpcs.errors import CpcsError

if TYPE_CHECKING:
    from cpcs.settings import Settings

#: The generated key file, beside the SQLite file.
KEY_FILE_NAME = "secret.key"
KEY_FILE_MODE = 0o600
SETTING = "CPCS_SECRET_KEY"
_DIALECT_ATTRIBUTE = "cpcs_secret_box"


class SecretKeyError(CpcsError):
    """The secret keys are missing or malformed: a configuration error, found at start."""

    code = "secret_key_invalid"
    http_status = 503


class SecretUnreadable(CpcsError):
    """A stored secret that none of the configured keys decrypts (written with another key)."""

    code = "secret_unreadable"
    http_status = 503


def new_key() -> str:
    """A fresh key for ``CPCS_SECRET_KEY`` (32 random bytes, URL-safe base64)."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(value: str) -> list[str]:
    """The keys of a setting: separated by commas, spaces or new lines."""
    return value.replace(",", " ").split()


class SecretBox:
    """Encrypts with the first key, decrypts with any (Fernet tokens, see the module docstring)."""

    def __init__(self, keys: Sequence[str]):
        if not keys:
            raise SecretKeyError(f"{SETTING} names no key.")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise SecretKeyError(
                    f"{SETTING}: key {position} is not a Fernet key (32 bytes in URL-safe base64, "
                    "44 characters); make one with `cpcs secrets new-key`."
                ) from None
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)
        #: Names the encrypting key without giving it away, so operators can compare processes.
        self.fingerprint = hashlib.sha256(keys[0].encode("ascii")).hexdigest()[:12]

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise self._unreadable() from None

    def rotate(self, token: str) -> str:
        """``token`` encrypted again with the first key (raises :class:`SecretUnreadable`)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise self._unreadable() from None

    def _unreadable(self) -> SecretUnreadable:
        return SecretUnreadable(
            f"a stored secret cannot be decrypted with the configured keys ({SETTING}, key "
            f"{self.fingerprint} first): it was written with another key; add that key to "
            f"{SETTING} (after the current one) or give the secret again"
        )


@dataclass(frozen=True)
class ResolvedKeys:
    box: SecretBox
    source: str  # where the keys came from, for the start log
    generated: bool = False  # a key file was created just now


def default_key_file(database_url: str) -> Path | None:
    """Where an SQLite database keeps its generated key (None: not an SQLite file)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database).resolve().parent / KEY_FILE_NAME


def _read_key_file(path: Path) -> SecretBox:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeError) as exc:
        raise SecretKeyError(f"the secret key file {path} cannot be read: {exc}") from None
    return SecretBox(parse_keys(text))


def _generate_key_file(path: Path) -> bool:
    """Write a new key to ``path`` (0600) unless a key is there already; True if written."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        return False  # another process made it first, or it was there: use it
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(new_key() + "\n")
    return True


def resolve_secret_box(configured: str | None, key_file: Path | None, database_url: str) -> ResolvedKeys:
    """The keys of a process (see the module docstring for the order)."""
    if configured and configured.strip():
        return ResolvedKeys(SecretBox(parse_keys(configured)), SETTING)
    if key_file is not None:
        if not key_file.is_file():
            raise SecretKeyError(f"CPCS_SECRET_KEY_FILE names {key_file}, which is not a file.")
        return ResolvedKeys(_read_key_file(key_file), str(key_file))
    generated_file = default_key_file(database_url)
    if generated_file is not None:
        generated_file.parent.mkdir(parents=True, exist_ok=True)
        generated = _generate_key_file(generated_file)
        return ResolvedKeys(_read_key_file(generated_file), str(generated_file), generated)
    if make_url(database_url).get_backend_name() == "sqlite":
        return ResolvedKeys(SecretBox([new_key()]), "held in memory only, as the database is", True)
    raise SecretKeyError(
        f"{SETTING} is not set. The database ({make_url(database_url).get_backend_name()}) keeps webhook "
        "secrets and SkyPortal tokens encrypted, and every api process must use the same key: make one "
        f"with `cpcs secrets new-key` and give it to each process as {SETTING} (or in a file named by "
        "CPCS_SECRET_KEY_FILE).",
        code="secret_key_missing",
    )


def keys_from_settings(settings: Settings, database_url: str | None = None) -> ResolvedKeys:
    """The keys ``settings`` give for ``database_url`` (default: the settings' database)."""
    configured = settings.secret_key.get_secret_value() if settings.secret_key is not None else None
    return resolve_secret_box(configured, settings.secret_key_file, database_url or settings.sqlalchemy_url)


# --------------------------------------------------------------------------------------------------
# The column type.


def bind_secret_box(engine: Engine, provider: Callable[[], SecretBox]) -> None:
    """Give ``engine``'s encrypted columns their keys (``provider`` is called on first use)."""
    lock = threading.Lock()
    resolved: list[SecretBox] = []

    def box() -> SecretBox:
        with lock:
            if not resolved:
                resolved.append(provider())
            return resolved[0]

    setattr(engine.dialect, _DIALECT_ATTRIBUTE, box)


def has_secret_box(engine: Engine) -> bool:
    return hasattr(engine.dialect, _DIALECT_ATTRIBUTE)


def secret_box_of(engine: Engine) -> SecretBox:
    """The keys bound to ``engine`` (raises :class:`SecretKeyError` without any)."""
    return _box_of(engine.dialect)


def _box_of(dialect: Dialect) -> SecretBox:
    provider = getattr(dialect, _DIALECT_ATTRIBUTE, None)
    if provider is None:
        raise SecretKeyError("this database connection was opened without secret keys (bind_secret_box)")
    box: SecretBox = provider()
    return box


class EncryptedString(TypeDecorator[str]):
    """Text stored as a Fernet token of the engine's :class:`SecretBox`; read back as the text.

    Reading a value no key decrypts raises :class:`SecretUnreadable`: map such columns
    ``deferred`` so that only the code that uses the secret reads it (and says what went wrong).
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _box_of(dialect).encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _box_of(dialect).decrypt(str(value))
