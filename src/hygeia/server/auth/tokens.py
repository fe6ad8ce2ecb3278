"""Access, refresh and id tokens: what they say, how they are issued and checked.

Access tokens are JWTs signed by the server (signing.py), so every server
process checks them without a database round trip for the signature; each
carries a ``jti`` that revocation can blacklist until it would have expired
anyway.  Refresh tokens are opaque handles stored as digests, spent on use
(each refresh returns a new one), so a stolen refresh token works once at most.

Revocation is read from the database on every request (never from a
process's cache), so it holds in every worker at once:

* a revoked access token's ``jti``;
* a refresh token *family*: the tokens descended from one authorization
  share a family id (``fam`` in each access token).  Presenting a refresh
  token a second time proves that someone holds a copy (RFC 6819 5.2.2.3):
  the whole family is revoked, refresh and access tokens alike, the access
  token issued on the first use included;
* a client's rotation (``hygeia auth client rotate``): its access tokens
  issued before it stop working.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import jwt

from hygeia.fhir.datetime import now_us
from hygeia.fhir.outcome import Unauthorized
from hygeia.server.auth.access import Access
from hygeia.server.auth.clients import OAuthError
from hygeia.server.auth.scopes import ScopeError, Scopes
from hygeia.server.auth.secrets import digest, new_handle
from hygeia.server.auth.signing import Signer
from hygeia.store import AuthStore, Handle

SECOND = 1_000_000
REFRESH = "refresh"
REVOKED = "revoked"
FAMILY = "family"
VERIFIED_CACHE = 4096  # verified access tokens remembered per process


@dataclass(frozen=True, slots=True)
class Grant:
    """What the resource owner (or a backend's registration) agreed to give a client."""

    client_id: str
    scopes: Scopes
    subject: str
    audience: str  # the FHIR base URL the token is for
    fhir_user: str | None = None  # "Practitioner/7": a relative reference
    patient: str | None = None
    encounter: str | None = None
    nonce: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    family: str | None = None  # the refresh token family this grant continues

    def to_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "scope": self.scopes.text, "sub": self.subject,
                "aud": self.audience, "fhirUser": self.fhir_user, "patient": self.patient,
                "encounter": self.encounter, "family": self.family}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        return cls(data["client_id"], Scopes.parse(data["scope"]), data["sub"], data["aud"],
                   data.get("fhirUser"), data.get("patient"), data.get("encounter"),
                   family=data.get("family"))


class TokenIssuer:
    """Issues the token response of RFC 6749 / SMART, and checks access tokens."""

    def __init__(self, store: AuthStore, signer: Signer, *, access_seconds: int,
                 refresh_seconds: int) -> None:
        self.store = store
        self.signer = signer
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        # verified tokens, oldest first (a dict keeps insertion order): see claims()
        self._verified: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def respond(self, grant: Grant, issuer: str) -> dict[str, Any]:
        """The token endpoint's answer for ``grant``."""
        now = now_us() // SECOND
        refreshable = grant.scopes.has("offline_access") or grant.scopes.has("online_access")
        if refreshable and grant.family is None:
            grant = replace(grant, family=new_handle())
        claims: dict[str, Any] = {
            "iss": issuer, "sub": grant.subject, "aud": grant.audience, "iat": now,
            "exp": now + self.access_seconds, "jti": new_handle(),
            "client_id": grant.client_id, "scope": grant.scopes.text}
        for name, value in (("patient", grant.patient), ("encounter", grant.encounter),
                            ("fhirUser", grant.fhir_user), ("fam", grant.family)):
            if value:
                claims[name] = value
        body: dict[str, Any] = {"access_token": self.signer.sign(claims),
                                "token_type": "Bearer", "expires_in": self.access_seconds,
                                "scope": grant.scopes.text}
        if grant.patient:
            body.update(patient=grant.patient, need_patient_banner=True)
        if grant.encounter:
            body["encounter"] = grant.encounter
        if refreshable:
            body["refresh_token"] = self._refresh_token(grant)
        if grant.scopes.has("openid") and grant.fhir_user:
            body["id_token"] = self._id_token(grant, issuer, now)
        return body

    def _refresh_token(self, grant: Grant) -> str:
        handle = new_handle()
        self.store.add_handle(Handle(digest(handle), REFRESH, grant.client_id,
                                     grant.to_json(), now_us() + self.refresh_seconds * SECOND,
                                     None))
        return handle

    def _id_token(self, grant: Grant, issuer: str, now: int) -> str:
        claims: dict[str, Any] = {
            "iss": issuer, "sub": grant.subject, "aud": grant.client_id, "iat": now,
            "exp": now + self.access_seconds,
            "fhirUser": f"{grant.audience.rstrip('/')}/{grant.fhir_user}"}
        if grant.nonce:
            claims["nonce"] = grant.nonce
        return self.signer.sign(claims)

    def spend_refresh(self, token: str, client_id: str) -> Grant | None:
        """The grant behind a refresh token, which is spent by this (None: not valid).

        A refresh token presented again after its use revokes its whole family.
        """
        handle = self.store.spend_handle(digest(token), REFRESH, now_us())
        if handle is None:
            self._revoke_family_if_replayed(token)
            return None
        family = handle.data.get("family")
        if handle.client_id != client_id or (
                family and self.store.jti_known(f"{FAMILY}:{family}")):
            return None
        return Grant.from_json(handle.data)

    def _revoke_family_if_replayed(self, token: str) -> None:
        spent = self.store.handle(digest(token), REFRESH)
        if spent is not None and spent.used is not None:
            self._revoke_family(spent.data.get("family"))

    def _revoke_family(self, family: str | None) -> None:
        """No token of ``family`` works any more (kept as long as any of them could)."""
        if family:
            self.store.note_jti(f"{FAMILY}:{family}", FAMILY,
                                now_us() + (self.refresh_seconds + self.access_seconds) * SECOND)

    def access(self, token: str, audiences: tuple[str, ...]) -> Access:
        """The Access a bearer token gives, or 401 saying what is wrong with it."""
        claims = self.claims(token, audiences)
        if claims is None:
            raise Unauthorized("The access token is not valid (expired, revoked, tampered "
                               "with, or issued for another server).", code="login",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Access(client_id=str(claims.get("client_id", "")),
                      scopes=Scopes.parse(str(claims.get("scope", ""))),
                      subject=str(claims.get("sub", "")), fhir_user=claims.get("fhirUser"),
                      patient=claims.get("patient"), token_id=claims.get("jti"),
                      expires=int(claims["exp"]) * SECOND)

    def claims(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any] | None:
        """A valid, unrevoked access token's claims; None for any other string.

        A token is presented with every request of a session, and checking it takes
        about 0.35 ms (PyJWT validates the base64 character by character; the RSA
        check itself is 0.05 ms), so a token once verified is remembered: later
        requests only check its expiry and whether it was revoked since.
        """
        key = (token, audiences)
        claims = self._verified.get(key)
        if claims is None:
            try:
                claims = self.signer.decode(token, audience=[a.rstrip("/") for a in audiences],
                                            options={"require": ["exp", "iat", "jti", "aud"]})
            except jwt.InvalidTokenError:
                return None
            self._remember(key, claims)
        elif claims["exp"] <= time.time():
            self._verified.pop(key, None)
            return None
        if self._revoked(claims):
            return None
        return claims

    def _revoked(self, claims: dict[str, Any]) -> bool:
        jtis = [f"{REVOKED}:{claims['jti']}"]
        if claims.get("fam"):
            jtis.append(f"{FAMILY}:{claims['fam']}")
        return self.store.token_revoked(jtis, str(claims.get("client_id", "")),
                                        int(claims["iat"]) * SECOND)

    def _remember(self, key: tuple[str, tuple[str, ...]], claims: dict[str, Any]) -> None:
        with self._lock:
            if len(self._verified) >= VERIFIED_CACHE:
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[key] = claims

    def revoke(self, token: str, client_id: str) -> None:
        """Revoke a refresh or access token of ``client_id`` (RFC 7009: unknown is fine)."""
        handle = self.store.handle(digest(token), REFRESH)
        if handle is not None:
            if handle.client_id == client_id:  # RFC 7009 2.1: and what it was issued with
                self.store.spend_handle(handle.digest, REFRESH, now_us())
                self._revoke_family(handle.data.get("family"))
            return
        try:
            claims = self.signer.decode(token, options={"verify_aud": False})
        except jwt.InvalidTokenError:
            return
        if claims.get("client_id") == client_id:
            self.store.note_jti(f"{REVOKED}:{claims['jti']}", REVOKED,
                                int(claims["exp"]) * SECOND + 60 * SECOND)

    def introspect(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        """RFC 7662: what a token means, or ``{"active": false}``."""
        claims = self.claims(token, audiences)
        if claims is None:
            handle = self.store.handle(digest(token), REFRESH)
            if handle is None or handle.used is not None or handle.expires <= now_us() or \
                    self.store.jti_known(f"{FAMILY}:{handle.data.get('family')}"):
                return {"active": False}
            grant = Grant.from_json(handle.data)
            return {"active": True, "token_type": "refresh_token", "client_id": grant.client_id,
                    "scope": grant.scopes.text, "sub": grant.subject,
                    "exp": handle.expires // SECOND}
        return {"active": True, "token_type": "Bearer",
                **{k: v for k, v in claims.items() if k not in ("jti", "fam")}}


def narrowed(grant: Grant, scope: str | None) -> Grant:
    """A refresh may ask for fewer scopes than were granted, never more."""
    if not scope:
        return grant
    scopes = requested_scopes(scope).within(grant.scopes)
    if scopes.empty:
        raise OAuthError("invalid_scope", "None of the requested scopes was granted before.")
    return replace(grant, scopes=scopes)


def requested_scopes(scope: str) -> Scopes:
    """The scopes a client asks for; ``invalid_scope`` when one is malformed or unknown."""
    try:
        return Scopes.parse_request(scope)
    except ScopeError as error:
        raise OAuthError("invalid_scope", str(error)) from None
