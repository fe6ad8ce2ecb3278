"""CDS Hooks 2.0 authentication: the calling EHR signs a JWT for each call.

The JWT (``Authorization: Bearer``) has ``iss`` (the EHR), ``sub``, ``aud`` = this
server's base URL + ``/cds-services/{id}``, ``exp`` (at most ``MAX_LIFETIME``
seconds ahead), ``iat`` and ``jti`` (used once); it is signed with ES384 or RS384
(the algorithms the spec requires) by a key of the JWK Set registered for its
issuer with ``hygeia cds client add``. A registered issuer is a client of the
authorization server named ``cds:{issuer}``, with no scopes: its keys are kept
(or fetched from its JWKS URL) and its ``jti`` values remembered like those of any
client. A JWT is required when the server runs with ``--auth``; on an open server
a call without one is answered, and one that is sent must verify.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from hygeia.fhir.datetime import now_us
from hygeia.fhir.outcome import Unauthorized
from hygeia.server.auth.client_keys import ClientKeys, ClientKeysUnavailable
from hygeia.server.extensions import Host
from hygeia.server.outbound import OutboundPolicy
from hygeia.store import AuthStore, Client

ALGORITHMS = ("ES384", "RS384")
MAX_LIFETIME = 600  # seconds from now a JWT may expire at most
CLIENT_PREFIX = "cds:"
REQUIRED = ["iss", "sub", "aud", "exp", "iat", "jti"]


def client_id(issuer: str) -> str:
    return CLIENT_PREFIX + issuer


def registered_client(issuer: str, jwks: dict[str, Any], now: int) -> Client:
    """The client record for an EHR issuer (keys, or ``{"jwks_uri": URL}``)."""
    return Client(client_id(issuer), f"CDS Hooks client {issuer}", None, jwks, (), "",
                  now, True)


class CdsAuth:
    """Verifies the EHR's JWT on each call (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self.store = AuthStore(host.repository)
        self.required = host.settings.auth.enabled
        outbound = host.settings.outbound
        self.keys = ClientKeys(OutboundPolicy(outbound.allow, outbound.timeout_seconds,
                                              outbound.max_bytes))

    def check(self, headers: Mapping[str, str], audience: str | list[str]) -> str | None:
        """The verified issuer, None for an unsigned call an open server accepts."""
        authorization = headers.get("authorization", "")
        if not authorization:
            if self.required:
                raise Unauthorized("This server requires a CDS Hooks JWT: "
                                   "Authorization: Bearer <JWT signed by the EHR>.",
                                   expression="Authorization",
                                   headers={"WWW-Authenticate": "Bearer"})
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refused("the Authorization header must be 'Bearer <JWT>'")
        return self._verified(token.strip(), audience)

    def _verified(self, token: str, audience: str | list[str]) -> str:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as error:
            raise _refused(f"it is not a JWT ({error})") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise _refused(f"it must be signed with {' or '.join(ALGORITHMS)}, not "
                           f"{str(algorithm)[:20]}")
        issuer = str(unverified.get("iss") or "")
        client = self.store.client(client_id(issuer)) if issuer else None
        if client is None or not client.active:
            raise _refused(f"its issuer {issuer[:200]!r} is not a registered CDS client "
                           "(hygeia cds client add)")
        claims = self._decode(token, header, str(algorithm), client, audience)
        if int(claims["exp"]) > now_us() // 1_000_000 + MAX_LIFETIME:
            raise _refused(f"it expires more than {MAX_LIFETIME} seconds from now")
        if not self.store.note_jti(f"cds:{issuer}:{claims['jti']}", "cds",
                                   int(claims["exp"]) * 1_000_000 + 60_000_000):
            raise _refused("its jti was used already (it must be new for each call)")
        return issuer

    def _decode(self, token: str, header: dict[str, Any], algorithm: str, client: Client,
                audience: str | list[str]) -> dict[str, Any]:
        kid = header.get("kid")
        try:
            keys = self.keys.keys(client.jwks_url, kid if isinstance(kid, str) else None) \
                if client.jwks_url else list((client.jwks or {}).get("keys", []))
        except ClientKeysUnavailable as error:
            raise _refused(str(error)) from None
        last: Exception | None = None
        for jwk in keys:
            if kid is not None and jwk.get("kid") != kid:
                continue
            try:
                key = jwt.PyJWK.from_dict(jwk, algorithm=algorithm).key
                claims: dict[str, Any] = jwt.decode(token, key, algorithms=[algorithm],
                                                    audience=audience, leeway=5,
                                                    options={"require": REQUIRED})
                return claims
            except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError) as error:
                last = error
        raise _refused(f"it does not verify ({last})" if last else
                       "no registered key matches its kid")


def _refused(why: str) -> Unauthorized:
    return Unauthorized(f"The CDS Hooks JWT is refused: {why}.", expression="Authorization",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
