"""The authorization tables: registered clients, users, signing keys and handles.

Nothing secret is stored in the clear: client secrets and one-time handles
(authorization codes, refresh tokens, launch ids) as SHA-256 digests (they are
long random strings, so a fast digest is enough), passwords as scrypt hashes
(server/auth/secrets.py), and the private half of the server's signing keys
encrypted with a key that lives outside the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.store.base import Repository
from hygeia.store.plain_sql import reading, writing

_CLIENT_COLUMNS = "client_id, name, secret_hash, jwks, redirect_uris, scopes, created, active"
# the handle row that says since when a client's access tokens are valid (rotation)
NOT_BEFORE = "not-before"
FOREVER = 2 ** 62


class DuplicateEntry(ValueError):
    """A client or user with that name is registered already."""


@dataclass(frozen=True, slots=True)
class Client:
    """An app allowed to ask for tokens.

    ``secret_hash`` is set for a confidential client with a shared secret,
    ``jwks`` (a JWK Set) for one that signs its assertions (SMART Backend
    Services, ``private_key_jwt``); a client with neither is public (PKCE only).
    A client registered by the URL of its JWK Set has ``{"jwks_uri": URL}`` there
    instead of keys (:attr:`jwks_url`): the keys are fetched when needed.
    ``scopes`` is the most the client may ever be granted.
    """

    client_id: str
    name: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    redirect_uris: tuple[str, ...]
    scopes: str
    created: int
    active: bool

    @property
    def public(self) -> bool:
        return self.secret_hash is None and self.jwks is None

    @property
    def jwks_url(self) -> str | None:
        """Where the client publishes its keys, when it registered a URL, not keys."""
        url = (self.jwks or {}).get("jwks_uri")
        return url if isinstance(url, str) else None


@dataclass(frozen=True, slots=True)
class User:
    """Someone who signs in; ``fhir_user`` is ``Patient/ID`` or ``Practitioner/ID`` (or None)."""

    username: str
    password_hash: str
    fhir_user: str | None
    created: int
    active: bool
    failed_logins: int = 0
    locked_until: int | None = None  # too many wrong passwords: no sign-in before this


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One of the server's own keys; ``private_key`` is encrypted PEM."""

    kid: str
    alg: str
    private_key: bytes
    public_jwk: dict[str, Any]
    created: int
    retired: int | None


@dataclass(frozen=True, slots=True)
class Handle:
    """A stored one-time or revocable handle (its digest is the key)."""

    digest: str
    kind: str
    client_id: str
    data: dict[str, Any]
    expires: int
    used: int | None


class AuthStore:
    """Reads and writes of the auth tables, each its own short transaction."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    # ------------------------------------------------------------ clients

    def add_client(self, client: Client) -> None:
        with writing(self.repository) as session:
            if session.execute("SELECT 1 FROM auth_client WHERE client_id = ?",
                               (client.client_id,)).fetchall():
                raise DuplicateEntry(f"A client with id '{client.client_id}' exists already.")
            session.execute(
                f"INSERT INTO auth_client ({_CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (client.client_id, client.name, client.secret_hash, _dump(client.jwks),
                 _dump(list(client.redirect_uris)), client.scopes, client.created,
                 client.active))

    def client(self, client_id: str) -> Client | None:
        with reading(self.repository) as session:
            rows = session.execute(f"SELECT {_CLIENT_COLUMNS} FROM auth_client "
                                   "WHERE client_id = ?", (client_id,)).fetchall()
        return _client(rows[0]) if rows else None

    def clients(self) -> list[Client]:
        """Every registered client, oldest first (``hygeia auth client list``)."""
        with reading(self.repository) as session:
            rows = session.execute(f"SELECT {_CLIENT_COLUMNS} FROM auth_client "
                                   "ORDER BY created, client_id").fetchall()
        return [_client(row) for row in rows]

    def set_client_active(self, client_id: str, active: bool) -> bool:
        """Enable or disable a client; False when there is no such client."""
        with writing(self.repository) as session:
            cursor = session.execute("UPDATE auth_client SET active = ? WHERE client_id = ?",
                                     (active, client_id))
            return bool(cursor.rowcount)

    def delete_client(self, client_id: str) -> bool:
        """Forget a client; False when there is no such client.  Its revocation mark
        (:meth:`revoke_client_tokens`) stays, so tokens issued before it stay dead."""
        with writing(self.repository) as session:
            cursor = session.execute("DELETE FROM auth_client WHERE client_id = ?",
                                     (client_id,))
            return bool(cursor.rowcount)

    def update_client_credentials(self, client_id: str, *, secret_hash: str | None,
                                  jwks: dict[str, Any] | None) -> bool:
        """Replace a client's secret or keys (rotation); False when there is no such client."""
        with writing(self.repository) as session:
            cursor = session.execute(
                "UPDATE auth_client SET secret_hash = ?, jwks = ? WHERE client_id = ?",
                (secret_hash, _dump(jwks), client_id))
            return bool(cursor.rowcount)

    def revoke_client_tokens(self, client_id: str, not_before: int) -> None:
        """Every access token of ``client_id`` issued before ``not_before`` (microseconds)
        stops working: kept as a handle row, so every server process sees it."""
        digest = f"{NOT_BEFORE}:{client_id}"
        with writing(self.repository) as session:
            session.execute("DELETE FROM auth_handle WHERE digest = ?", (digest,))
            session.execute(
                "INSERT INTO auth_handle (digest, kind, client_id, data, expires, used) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (digest, NOT_BEFORE, client_id, _dump({"not_before": not_before}), FOREVER))

    # ------------------------------------------------------------ users

    def add_user(self, user: User) -> None:
        with writing(self.repository) as session:
            if session.execute("SELECT 1 FROM auth_user WHERE username = ?",
                               (user.username,)).fetchall():
                raise DuplicateEntry(f"A user named '{user.username}' exists already.")
            session.execute(
                "INSERT INTO auth_user (username, password_hash, fhir_user, created, active) "
                "VALUES (?, ?, ?, ?, ?)",
                (user.username, user.password_hash, user.fhir_user, user.created, user.active))

    def user(self, username: str) -> User | None:
        with reading(self.repository) as session:
            rows = session.execute(
                "SELECT username, password_hash, fhir_user, created, active, failed_logins, "
                "locked_until FROM auth_user WHERE username = ?", (username,)).fetchall()
        if not rows:
            return None
        name, password_hash, fhir_user, created, active, failed, locked = rows[0]
        return User(name, password_hash, fhir_user, int(created), bool(active), int(failed),
                    None if locked is None else int(locked))

    def users(self) -> list[User]:
        """Every user, by name (``hygeia auth user list``); no password hashes leave here
        other than in the records themselves."""
        with reading(self.repository) as session:
            names = session.execute("SELECT username FROM auth_user "
                                    "ORDER BY username").fetchall()
        return [user for (name,) in names if (user := self.user(name)) is not None]

    def set_user_active(self, username: str, active: bool) -> bool:
        """Enable or disable a user's sign-in; False when there is no such user."""
        with writing(self.repository) as session:
            cursor = session.execute("UPDATE auth_user SET active = ? WHERE username = ?",
                                     (active, username))
            return bool(cursor.rowcount)

    def note_sign_in(self, username: str, succeeded: bool, *, now: int, limit: int,
                     lock_us: int) -> None:
        """Count a wrong password (locking the user after ``limit`` in a row), or reset."""
        with writing(self.repository) as session:
            if succeeded:
                session.execute("UPDATE auth_user SET failed_logins = 0, locked_until = NULL "
                                "WHERE username = ?", (username,))
                return
            session.execute(
                "UPDATE auth_user SET failed_logins = failed_logins + 1, locked_until = "
                "CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END "
                "WHERE username = ?", (limit, now + lock_us, username))

    # ------------------------------------------------------------ signing keys

    def add_key(self, key: SigningKey) -> None:
        with writing(self.repository) as session:
            session.execute(
                "INSERT INTO auth_key (kid, alg, private_key, public_jwk, created, retired) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (key.kid, key.alg, key.private_key, _dump(key.public_jwk), key.created))

    def retire_keys(self, now: int, keep: str) -> None:
        """Retire every active key but ``keep`` (they stay published until pruned)."""
        with writing(self.repository) as session:
            session.execute("UPDATE auth_key SET retired = ? WHERE retired IS NULL AND kid <> ?",
                            (now, keep))

    def prune_keys(self, before: int) -> None:
        """Forget keys retired before ``before``: no token they signed can still be valid."""
        with writing(self.repository) as session:
            session.execute("DELETE FROM auth_key WHERE retired IS NOT NULL AND retired < ?",
                            (before,))

    def keys(self) -> list[SigningKey]:
        """Every key, the active one (newest unretired) first."""
        with reading(self.repository) as session:
            rows = session.execute(
                "SELECT kid, alg, private_key, public_jwk, created, retired FROM auth_key "
                "ORDER BY retired IS NOT NULL, created DESC").fetchall()
        return [SigningKey(kid, alg, bytes(private), orjson.loads(public), int(created),
                           None if retired is None else int(retired))
                for kid, alg, private, public, created, retired in rows]

    # ------------------------------------------------------------ handles

    def add_handle(self, handle: Handle) -> None:
        with writing(self.repository) as session:
            session.execute(
                "INSERT INTO auth_handle (digest, kind, client_id, data, expires, used) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (handle.digest, handle.kind, handle.client_id, _dump(handle.data),
                 handle.expires))

    def handle(self, digest: str, kind: str) -> Handle | None:
        with reading(self.repository) as session:
            rows = session.execute(
                "SELECT digest, kind, client_id, data, expires, used FROM auth_handle "
                "WHERE digest = ? AND kind = ?", (digest, kind)).fetchall()
        return _handle(rows[0]) if rows else None

    def spend_handle(self, digest: str, kind: str, now: int) -> Handle | None:
        """Mark a handle used and return it, once: None when unknown, used or expired.

        The conditional UPDATE makes the check and the marking one step, so two
        requests racing with the same authorization code cannot both win.
        """
        with writing(self.repository) as session:
            cursor = session.execute(
                "UPDATE auth_handle SET used = ? WHERE digest = ? AND kind = ? "
                "AND used IS NULL AND expires > ?", (now, digest, kind, now))
            if not cursor.rowcount:
                return None
            rows = session.execute(
                "SELECT digest, kind, client_id, data, expires, used FROM auth_handle "
                "WHERE digest = ?", (digest,)).fetchall()
        return _handle(rows[0])

    def prune_handles(self, now: int) -> None:
        with writing(self.repository) as session:
            session.execute("DELETE FROM auth_handle WHERE expires < ?", (now,))
            session.execute("DELETE FROM auth_jti WHERE expires < ?", (now,))

    # ------------------------------------------------------------ token ids

    def note_jti(self, jti: str, kind: str, expires: int) -> bool:
        """Record a token id; False when it was recorded already (a replay)."""
        with writing(self.repository) as session:
            cursor = session.execute(
                "INSERT INTO auth_jti (jti, kind, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (jti) DO NOTHING", (jti, kind, expires))
            return bool(cursor.rowcount)

    def token_revoked(self, jtis: list[str], client_id: str, issued: int) -> bool:
        """Whether an access token is revoked: one of its ids (``jtis``: its own, its
        refresh family's) was noted, or its client revoked tokens issued before
        ``issued`` (microseconds).  One short read, made on every request."""
        marks = ", ".join("?" for _ in jtis)
        with reading(self.repository) as session:
            if jtis and session.execute(f"SELECT 1 FROM auth_jti WHERE jti IN ({marks})",
                                        tuple(jtis)).fetchall():
                return True
            rows = session.execute("SELECT data FROM auth_handle WHERE digest = ? AND kind = ?",
                                   (f"{NOT_BEFORE}:{client_id}", NOT_BEFORE)).fetchall()
        return bool(rows) and issued < int(orjson.loads(rows[0][0])["not_before"])

    def jti_known(self, jti: str) -> bool:
        with reading(self.repository) as session:
            return bool(session.execute("SELECT 1 FROM auth_jti WHERE jti = ?",
                                        (jti,)).fetchall())


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _client(row: tuple[Any, ...]) -> Client:
    client_id, name, secret_hash, jwks, redirect_uris, scopes, created, active = row
    return Client(client_id, name, secret_hash, None if jwks is None else orjson.loads(jwks),
                  tuple(orjson.loads(redirect_uris)), scopes, int(created), bool(active))


def _handle(row: tuple[Any, ...]) -> Handle:
    digest, kind, client_id, data, expires, used = row
    return Handle(digest, kind, client_id, orjson.loads(data), int(expires),
                  None if used is None else int(used))
