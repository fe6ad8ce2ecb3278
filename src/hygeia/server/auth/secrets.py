"""Secrets at rest: password hashes, handle digests, and the box that seals private keys.

Passwords are chosen by people, so they get a slow, salted hash (scrypt, from
the standard library).  Client secrets, authorization codes and refresh
tokens are 256-bit random strings, so a plain SHA-256 digest already makes
a stolen table useless, and lookups by digest stay one index probe.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}  # about 50 ms and 16 MB per hash
SECRET_KEY_ENV = "HYGEIA_SECRET_KEY"


def new_handle() -> str:
    """A fresh unguessable string (client secrets, codes, refresh tokens, launch ids)."""
    return secrets.token_urlsafe(32)


def digest(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()


def same_digest(handle: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(digest(handle), stored)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + "$".join(
        base64.b64encode(part).decode() for part in (salt, derived))


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        derived = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                 r=int(r), p=int(p))
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(derived, base64.b64decode(expected))


class SecretKeyUnreadable(ValueError):
    """The secret key file (or ``HYGEIA_SECRET_KEY``) holds no usable key: empty,
    truncated or another kind of file.  The message names where the key came from."""


class SecretBox:
    """Seals the server's private signing keys with a key kept outside the database."""

    def __init__(self, key: bytes, origin: str = SECRET_KEY_ENV) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            fix = ("set it to the key the servers on this database share"
                   if origin == SECRET_KEY_ENV else
                   "give the file the server made before with --secret-key-file, or delete "
                   "this one to have a new key made (the signing keys sealed with the old "
                   "key are then lost)")
            raise SecretKeyUnreadable(f"{origin} holds no secret key (a key is 32 url-safe "
                                      f"base64-encoded bytes): {fix}") from None

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, sealed: bytes) -> bytes | None:
        """The plain bytes, or None when they were sealed with another key."""
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken:
            return None

    @classmethod
    def ephemeral(cls) -> SecretBox:
        """A box for this process only (tests, embedded use): its keys die with it."""
        return cls(Fernet.generate_key())

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The key in ``$HYGEIA_SECRET_KEY``, else in ``path`` (made, owner-only, if missing).

        Several servers on one database must share the key: give each the same
        environment variable or file.
        """
        from_env = os.environ.get(SECRET_KEY_ENV)
        if from_env:
            return cls(from_env.encode())
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it meanwhile
                pass
            else:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(Fernet.generate_key())
        return cls(path.read_bytes().strip(), str(path))
