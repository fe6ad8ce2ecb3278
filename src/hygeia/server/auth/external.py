"""Tokens from an external OpenID Connect provider (Keycloak, Entra ID, Okta, ...).

With ``--oidc-issuer``, Hygeia issues no tokens itself: it checks each
bearer token's signature against the provider's published keys (JWKS, found
through ``ISSUER/.well-known/openid-configuration`` unless given), its issuer,
audience and expiry, and reads SMART's claims from it: ``scope`` (or ``scp``),
``patient``, ``fhirUser``, ``client_id`` (or ``azp``).  The scopes are then
enforced exactly as for Hygeia's own tokens.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import jwt

from hygeia.fhir.outcome import Unauthorized
from hygeia.server.auth.access import Access
from hygeia.server.auth.scopes import Scopes

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
_DISCOVERY_TIMEOUT = 10.0


class ExternalProvider:
    """Verifies a provider's access tokens; discovery is fetched once, keys cached."""

    def __init__(self, issuer: str, audience: str | None = None,
                 jwks_url: str | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._jwks_url = jwks_url
        self._discovery: dict[str, Any] | None = None
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def discovery(self) -> dict[str, Any]:
        """The provider's OpenID configuration (empty when it publishes none)."""
        with self._lock:
            if self._discovery is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                try:
                    with urllib.request.urlopen(url, timeout=_DISCOVERY_TIMEOUT) as answer:
                        self._discovery = json.load(answer)
                except (urllib.error.URLError, OSError, ValueError):
                    if self._jwks_url is None:
                        raise
                    self._discovery = {}
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
            key = self._key_client().get_signing_key_from_jwt(token).key
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=audience, issuer=self.issuer,
                leeway=5, options={"require": ["exp", "iss", "aud"]})
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as error:
            raise Unauthorized(f"The access token is not valid: {error}.", code="login",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                               ) from None
        return claims

    def _key_client(self) -> jwt.PyJWKClient:
        if self._keys is None:
            url = self._jwks_url or self.discovery()["jwks_uri"]
            self._keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=300)
        return self._keys

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
