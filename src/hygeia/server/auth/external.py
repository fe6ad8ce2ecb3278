"""Tokens from an external OpenID Connect provider (Keycloak, Entra ID, Okta, ...).

With ``--oidc-issuer``, Hygeia issues no tokens itself: it checks each
bearer token's signature against the provider's published keys (JWKS, found
through ``ISSUER/.well-known/openid-configuration`` unless given), its issuer,
audience and expiry, and reads SMART's claims from it: ``scope`` (or ``scp``),
``patient``, ``fhirUser``, ``client_id`` (or ``azp``).  The scopes are then
enforced exactly as for Hygeia's own tokens.  Discovery and keys are fetched
through the guarded outbound client (server/outbound.py), the keys cached
as client keys are (client_keys.py).
"""

from __future__ import annotations

import threading
from typing import Any

import jwt

from hygeia.fhir.outcome import Unauthorized
from hygeia.server.auth.access import Access
from hygeia.server.auth.client_keys import ClientKeys, ClientKeysUnavailable
from hygeia.server.auth.scopes import Scopes
from hygeia.server.outbound import OutboundPolicy, OutboundRefused, fetch_json

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class ExternalProvider:
    """Verifies a provider's access tokens; discovery is fetched once, keys cached."""

    def __init__(self, issuer: str, audience: str | None = None,
                 jwks_url: str | None = None, policy: OutboundPolicy | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._jwks_url = jwks_url
        self._policy = policy or OutboundPolicy()
        self._discovery: dict[str, Any] | None = None
        self._keys = ClientKeys(self._policy)
        self._lock = threading.Lock()

    def discovery(self) -> dict[str, Any]:
        """The provider's OpenID configuration (empty when it publishes none)."""
        with self._lock:
            if self._discovery is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                try:
                    found = fetch_json(url, self._policy)
                except OutboundRefused:
                    if self._jwks_url is None:
                        raise
                    found = {}
                self._discovery = found if isinstance(found, dict) else {}
            return self._discovery

    def access(self, token: str, fhir_base: str) -> Access:
        claims = self._claims(token, fhir_base)
        scope = claims.get("scope", claims.get("scp", ""))
        text = " ".join(scope) if isinstance(scope, list) else str(scope)
        client = claims.get("client_id") or claims.get("azp") or ""
        return Access(client_id=str(client), scopes=Scopes.parse(text),
                      subject=str(claims.get("sub", "")), fhir_user=claims.get("fhirUser"),
                      patient=claims.get("patient"), token_id=claims.get("jti"),
                      expires=int(claims["exp"]) * 1_000_000)

    def _claims(self, token: str, fhir_base: str) -> dict[str, Any]:
        audience = self.audience or fhir_base.rstrip("/")
        try:
            key = self._signing_key(token)
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=audience, issuer=self.issuer,
                leeway=5, options={"require": ["exp", "iss", "aud"]})
        except (jwt.InvalidTokenError, jwt.PyJWKError, ClientKeysUnavailable,
                OutboundRefused, KeyError) as error:
            raise Unauthorized(f"The access token is not valid: {error}.", code="login",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                               ) from None
        return claims

    def _signing_key(self, token: str) -> Any:
        """The provider's key the token names (kid), fetched again when it is new."""
        kid = jwt.get_unverified_header(token).get("kid")
        url = self._jwks_url or str(self.discovery()["jwks_uri"])
        keys = self._keys.keys(url, kid if isinstance(kid, str) else None)
        matching = [key for key in keys if kid is None or key.get("kid") == kid]
        if not matching:
            raise jwt.InvalidTokenError("no key of the provider matches the token's kid")
        return jwt.PyJWK.from_dict(matching[0]).key

    def smart_configuration(self) -> dict[str, Any]:
        """SMART discovery pointing at the provider's own endpoints."""
        found = self.discovery()
        names = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint",
                 "introspection_endpoint", "revocation_endpoint", "grant_types_supported",
                 "token_endpoint_auth_methods_supported",
                 "token_endpoint_auth_signing_alg_values_supported", "scopes_supported",
                 "response_types_supported", "code_challenge_methods_supported")
        config = {name: found[name] for name in names if name in found}
        config.setdefault("issuer", self.issuer)
        config["capabilities"] = ["launch-standalone", "client-public",
                                  "client-confidential-symmetric", "permission-v1",
                                  "permission-v2", "permission-patient", "permission-user"]
        return config
