"""Who is calling the token endpoint: client authentication (RFC 6749, RFC 7523).

Three ways, as SMART App Launch 2.0 and Backend Services define them:

* ``private_key_jwt``: the client signs a short-lived assertion (RS384 or
  ES384) with a key whose public half it registered (or published at the
  JWKS URL it registered); each assertion's ``jti`` passes once.  An
  assertion's ``jku`` header is accepted only when it is exactly the
  registered JWKS URL: keys are never fetched from a URL the assertion names.
* ``client_secret_basic`` / ``client_secret_post``: a shared secret.
* a public client only names itself (``client_id``); PKCE protects its codes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import jwt

from hygeia.fhir.datetime import now_us
from hygeia.server.auth.client_keys import ClientKeys, ClientKeysUnavailable
from hygeia.server.auth.secrets import same_digest
from hygeia.store import AuthStore, Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")  # SMART Backend Services
MAX_ASSERTION_SECONDS = 300  # an assertion may not live longer than this


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 section 5.2): ``error`` code and a sentence."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def authenticate_client(store: AuthStore, form: Mapping[str, str],
                        authorization: str | None, token_url: str,
                        keys: ClientKeys | None = None) -> Client:
    """The client the request comes from, proven as its registration requires
    (``keys`` fetches the keys of clients registered by JWKS URL)."""
    if form.get("client_assertion_type") or form.get("client_assertion"):
        return _by_assertion(store, form, token_url, keys)
    if authorization and authorization.lower().startswith("basic "):
        client_id, secret = _basic_credentials(authorization)
        return _by_secret(store, client_id, secret)
    client_id = form.get("client_id", "")
    if "client_secret" in form:
        return _by_secret(store, client_id, form["client_secret"])
    client = _known(store, client_id)
    if not client.public:
        raise OAuthError("invalid_client", f"Client '{client_id}' must authenticate (with its "
                         "secret or a signed client assertion).", 401)
    return client


def _known(store: AuthStore, client_id: str) -> Client:
    client = store.client(client_id) if client_id else None
    if client is None or not client.active:
        raise OAuthError("invalid_client", f"There is no active client '{client_id}'.", 401)
    return client


def _basic_credentials(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header.split(None, 1)[1], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, IndexError):
        raise OAuthError("invalid_client", "The Basic credentials are not valid base64.",
                         401) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_client", "The Basic credentials lack a secret.", 401)
    return unquote(client_id), unquote(secret)


def _by_secret(store: AuthStore, client_id: str, secret: str) -> Client:
    client = _known(store, client_id)
    if not same_digest(secret, client.secret_hash):
        raise OAuthError("invalid_client", f"Wrong secret for client '{client_id}'.", 401)
    return client


def _by_assertion(store: AuthStore, form: Mapping[str, str], token_url: str,
                  keys: ClientKeys | None) -> Client:
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}.",
                         401)
    assertion = form.get("client_assertion", "")
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError as error:
        raise OAuthError("invalid_client", f"The client assertion is not a JWT: {error}.",
                         401) from None
    client_id = str(unverified.get("iss", ""))
    client = _known(store, client_id)
    claims = _verified_assertion(client, assertion, header, token_url, keys)
    if claims.get("sub") != client_id:
        raise OAuthError("invalid_client", "The assertion's sub must equal its iss (the "
                         "client id).", 401)
    if claims["exp"] * 1_000_000 > now_us() + MAX_ASSERTION_SECONDS * 1_000_000:
        raise OAuthError("invalid_client", "The client assertion expires more than "
                         f"{MAX_ASSERTION_SECONDS} seconds from now.", 401)
    if not store.note_jti(f"assertion:{client_id}:{claims['jti']}", "assertion",
                          int(claims["exp"]) * 1_000_000 + 60_000_000):
        raise OAuthError("invalid_client", "This client assertion was used already (its jti "
                         "must be new each time).", 401)
    return client


def _registered_keys(client: Client, header: dict[str, Any],
                     keys: ClientKeys | None) -> list[dict[str, Any]]:
    """The client's public keys: registered, or fetched from its registered JWKS URL."""
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_url:
        raise OAuthError("invalid_client", "The client assertion's jku header is not the "
                         f"JWKS URL client '{client.client_id}' registered.", 401)
    if client.jwks_url is not None:
        if keys is None:
            raise OAuthError("invalid_client", "This server does not fetch client keys.", 401)
        kid = header.get("kid")
        try:
            return keys.keys(client.jwks_url, kid if isinstance(kid, str) else None)
        except ClientKeysUnavailable as error:
            raise OAuthError("invalid_client", str(error), 401) from None
    if not client.jwks:
        raise OAuthError("invalid_client", f"Client '{client.client_id}' has no registered "
                         "keys to check an assertion with.", 401)
    registered: list[dict[str, Any]] = client.jwks.get("keys", [])
    return registered


def _verified_assertion(client: Client, assertion: str, header: dict[str, Any],
                        token_url: str, keys: ClientKeys | None) -> dict[str, Any]:
    algorithm = header.get("alg")
    if algorithm not in ASSERTION_ALGORITHMS:
        raise OAuthError("invalid_client", f"Client assertions must be signed with "
                         f"{' or '.join(ASSERTION_ALGORITHMS)}, not {algorithm}.", 401)
    candidates = [key for key in _registered_keys(client, header, keys)
                  if header.get("kid") in (None, key.get("kid"))]
    last_error: Exception | None = None
    for jwk in candidates:
        try:
            key = jwt.PyJWK.from_dict(jwk, algorithm=algorithm).key
            claims: dict[str, Any] = jwt.decode(
                assertion, key, algorithms=[algorithm], audience=token_url, leeway=5,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]})
            return claims
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError) as error:
            last_error = error
    detail = f": {last_error}" if last_error else " (no registered key matches its kid)"
    raise OAuthError("invalid_client", f"The client assertion does not verify{detail}.", 401)
