"""The server's own signing keys: sign tokens, check its own signatures, publish the JWKS.

Keys live in the ``auth_key`` table, the private half sealed (secrets.py), so
every server process on the database signs and verifies with the same keys.
Rotation makes a new active key; the retired ones stay published (and keep
verifying) until every token they signed has expired.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from hygeia.fhir.datetime import now_us
from hygeia.server.auth.secrets import SecretBox
from hygeia.store import AuthStore, SigningKey

ALGORITHM = "RS256"  # what every OpenID Connect library accepts for an id_token
# keys are read again after this long (a rotation by another process shows up within it),
# and at once for an unknown kid, but never more often
_RELOAD_SECONDS = 5.0


class SecretKeyMismatch(Exception):
    """The database's active signing key was sealed with another secret key.

    Making a new key then would hide a misconfiguration (the wrong
    ``--secret-key-file``, a lost ``HYGEIA_SECRET_KEY``) and, with several
    servers on one database, let each replace the others' key in turn.
    """


class Signer:
    """Signs with the active key and verifies against every published one."""

    def __init__(self, store: AuthStore, box: SecretBox) -> None:
        self.store = store
        self.box = box
        self._lock = threading.Lock()
        self._private: tuple[str, Any] | None = None  # (kid, key) of the active key
        self._public: dict[str, Any] = {}
        self._jwks: list[dict[str, Any]] = []
        self._loaded_at = 0.0
        self._sealed_elsewhere = False  # the active key exists but this box cannot open it

    def sign(self, claims: dict[str, Any]) -> str:
        kid, key = self._active()
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})

    def decode(self, token: str, **options: Any) -> dict[str, Any]:
        """Claims of a token this server signed; raises ``jwt.InvalidTokenError``."""
        kid = jwt.get_unverified_header(token).get("kid")
        key = self._public_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidSignatureError("The token was not signed by a key of this server.")
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=[ALGORITHM], leeway=5,
                                            **options)
        return claims

    def jwks(self) -> dict[str, Any]:
        self._active()
        return {"keys": list(self._jwks)}

    def check_secret_key(self) -> None:
        """:class:`SecretKeyMismatch` unless the secret key opens the active signing key
        (or there is none yet, and the first use makes it)."""
        with self._lock:
            self._reload()
            if self._private is None and self._sealed_elsewhere:
                raise SecretKeyMismatch("the secret key does not open the token signing keys "
                                        "this database holds")

    def ensure_active_key(self) -> str:
        """The kid of the active signing key, made now if the database holds none.

        ``hygeia serve --auth`` calls it before it forks its serving processes, so
        the first token requests do not race to make the first key.
        """
        return self._active()[0]

    def rotate(self, *, replace_unopenable: bool = False) -> str:
        """Make a new active key and retire the others; returns its kid.

        When the active key was sealed with another secret key, only with
        ``replace_unopenable`` (the operator lost that key and accepts a new one).
        """
        if not replace_unopenable:
            self.check_secret_key()
        with self._lock:
            key = _new_key(self.box)
            self.store.add_key(key)
            self.store.retire_keys(now_us(), keep=key.kid)
            self._reload()
            return key.kid

    def _active(self) -> tuple[str, Any]:
        with self._lock:
            if self._private is None or self._stale():
                self._reload()
            if self._private is None and self._sealed_elsewhere:
                raise SecretKeyMismatch("the secret key does not open the token signing keys "
                                        "this database holds")
            if self._private is None:
                key = _new_key(self.box)
                self.store.add_key(key)
                self.store.retire_keys(now_us(), keep=key.kid)
                self._reload()
            assert self._private is not None
            return self._private

    def _public_key(self, kid: str) -> Any:
        with self._lock:
            if kid not in self._public and self._stale():
                self._reload()
            return self._public.get(kid)

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at > _RELOAD_SECONDS

    def _reload(self) -> None:
        """Read the keys again (another process may have rotated them)."""
        keys = self.store.keys()
        self._public = {key.kid: RSAAlgorithm.from_jwk(key.public_jwk) for key in keys}
        self._jwks = [key.public_jwk for key in keys]
        self._private = None
        self._sealed_elsewhere = False
        for key in keys:
            if key.retired is None:
                pem = self.box.open(key.private_key)
                if pem is not None:
                    self._private = (key.kid, serialization.load_pem_private_key(pem, None))
                self._sealed_elsewhere = pem is None
                break
        self._loaded_at = time.monotonic()


def _new_key(box: SecretBox) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public: dict[str, Any] = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    thumbprint = hashlib.sha256(f"{public['n']}.{public['e']}".encode()).digest()
    kid = base64.urlsafe_b64encode(thumbprint[:12]).decode()
    public.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return SigningKey(kid, ALGORITHM, box.seal(pem), public, now_us(), None)
