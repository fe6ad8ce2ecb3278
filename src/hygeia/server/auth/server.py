"""Hygeia's own OAuth 2.0 authorization server, as SMART on FHIR uses it.

One object per FhirService: the token endpoint's grants (authorization code
with PKCE, refresh token, client credentials with a signed assertion),
introspection, revocation, the authorization endpoint's steps, discovery
(``.well-known/smart-configuration``) and the check of every bearer token on
the FHIR API.  HTTP lives in ``server/auth/endpoints.py`` (a mount); this module speaks in
forms, dicts and :class:`OAuthError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hygeia.fhir.outcome import Unauthorized
from hygeia.server.auth import authorize
from hygeia.server.auth.access import Access
from hygeia.server.auth.client_keys import ClientKeys
from hygeia.server.auth.clients import ASSERTION_ALGORITHMS, OAuthError, authenticate_client
from hygeia.server.auth.external import ExternalProvider
from hygeia.server.auth.scopes import Scopes
from hygeia.server.auth.secrets import SecretBox
from hygeia.server.auth.signing import Signer
from hygeia.server.auth.tokens import Grant, TokenIssuer, narrowed, requested_scopes
from hygeia.server.context import Settings
from hygeia.server.outbound import OutboundPolicy
from hygeia.store import AuthStore, Repository

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
SCOPES_SUPPORTED = ("openid", "fhirUser", "launch", "launch/patient", "offline_access",
                    "online_access", "patient/*.rs", "user/*.rs", "user/*.cruds",
                    "system/*.rs", "patient/*.read", "user/*.read", "system/*.read")
CAPABILITIES = ("launch-ehr", "launch-standalone", "client-public",
                "client-confidential-symmetric", "client-confidential-asymmetric",
                "context-ehr-patient", "context-standalone-patient", "context-ehr-encounter",
                "sso-openid-connect", "permission-offline", "permission-online",
                "permission-patient", "permission-user", "permission-v1", "permission-v2",
                "authorize-post")
# someone reports each auth event (the audit trail); called with (event, details)
AuthListener = Callable[[str, dict[str, Any]], None]


class AuthServer:
    """Issues and checks tokens for one database."""

    def __init__(self, repository: Repository, settings: Settings) -> None:
        self.store = AuthStore(repository)
        box = (SecretBox.from_file(Path(settings.auth.secret_key_file))
               if settings.auth.secret_key_file else SecretBox.ephemeral())
        self.signer = Signer(self.store, box)
        self.tokens = TokenIssuer(self.store, self.signer,
                                  access_seconds=settings.auth.access_token_seconds,
                                  refresh_seconds=settings.auth.refresh_token_seconds)
        self.listeners: list[AuthListener] = []
        policy = OutboundPolicy(settings.outbound.allow, settings.outbound.timeout_seconds,
                                settings.outbound.max_bytes)
        self.client_keys = ClientKeys(policy)
        # the provider the operator configured is trusted by name, wherever it runs
        self.external = (ExternalProvider(settings.auth.oidc_issuer, settings.auth.oidc_audience,
                                          settings.auth.oidc_jwks_url,
                                          policy.with_hosts([settings.auth.oidc_issuer,
                                                             settings.auth.oidc_jwks_url]))
                         if settings.auth.oidc_issuer else None)

    # ------------------------------------------------------------ the FHIR API

    def authenticate(self, authorization: str | None, fhir_base: str,
                     remote: str | None = None) -> Access:
        """The Access of the request's bearer token; 401 when there is none or it is bad."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("This server needs an access token: send Authorization: "
                               "Bearer <token> (see .well-known/smart-configuration).",
                               code="login", headers={"WWW-Authenticate": 'Bearer realm="fhir"'})
        token = authorization.split(None, 1)[1].strip()
        try:
            if self.external is not None:
                return self.external.access(token, fhir_base)
            return self.tokens.access(token, (fhir_base,))
        except Unauthorized:
            self._tell("token-refused", {"site": fhir_base, "remote": remote,
                                         "error": "a bad access token on the FHIR API"})
            raise

    # ------------------------------------------------------------ endpoints

    def token(self, form: Mapping[str, str], authorization: str | None,
              origin: str, remote: str | None = None) -> dict[str, Any]:
        """The token endpoint (RFC 6749 section 4, SMART)."""
        grant_type = form.get("grant_type", "")
        if grant_type not in GRANT_TYPES:
            raise OAuthError("unsupported_grant_type", f"grant_type must be one of "
                             f"{', '.join(GRANT_TYPES)}.")
        try:
            client = authenticate_client(self.store, form, authorization, f"{origin}/auth/token",
                                         self.client_keys)
            if grant_type == "authorization_code":
                grant = authorize.redeem_code(self.store, client, form)
            elif grant_type == "refresh_token":
                found = self.tokens.spend_refresh(form.get("refresh_token", ""), client.client_id)
                if found is None:
                    raise OAuthError("invalid_grant", "The refresh token is unknown, expired, "
                                     "revoked or used already.")
                self._require_active_user(found.subject)
                grant = narrowed(found, form.get("scope"))
            else:
                grant = self._backend_grant(client.client_id, client.scopes, client.public,
                                            form.get("scope", ""), origin)
        except OAuthError as error:
            self._tell("token-refused", {"client_id": form.get("client_id"),
                                         "grant_type": grant_type, "error": error.description,
                                         "site": origin, "remote": remote})
            raise
        self._tell("token-issued", {"client_id": grant.client_id, "user": grant.subject,
                                    "patient": grant.patient, "scope": grant.scopes.text,
                                    "grant_type": grant_type, "site": origin,
                                    "remote": remote})
        return self.tokens.respond(grant, f"{origin}/auth")

    def _require_active_user(self, username: str) -> None:
        """A refresh token stops working once its user is disabled (``hygeia auth user
        disable``); only user grants (authorization code) carry refresh tokens."""
        user = self.store.user(username)
        if user is not None and not user.active:
            raise OAuthError("invalid_grant", f"The user '{username}' is disabled.")

    def _backend_grant(self, client_id: str, allowed: str, public: bool, scope: str,
                       origin: str) -> Grant:
        """Client credentials (SMART Backend Services): system scopes only."""
        if public:
            raise OAuthError("unauthorized_client", "A public client cannot use "
                             "client_credentials.")
        requested = requested_scopes(scope).within(Scopes.parse(allowed))
        rules = tuple(rule for rule in requested.rules if rule.context == "system")
        if not rules:
            raise OAuthError("invalid_scope", "None of the requested scopes is a system scope "
                             "this client is registered for.")
        return Grant(client_id, Scopes(rules), client_id, f"{origin}/fhir")

    def introspect(self, form: Mapping[str, str], authorization: str | None,
                   origin: str) -> dict[str, Any]:
        """RFC 7662, for authenticated (confidential) clients."""
        client = authenticate_client(self.store, form, authorization, f"{origin}/auth/token",
                                     self.client_keys)
        if client.public:
            raise OAuthError("invalid_client", "Introspection is for confidential clients.", 401)
        return self.tokens.introspect(form.get("token", ""), (f"{origin}/fhir",))

    def revoke(self, form: Mapping[str, str], authorization: str | None, origin: str,
               remote: str | None = None) -> None:
        """RFC 7009: the token stops working; unknown tokens are not an error."""
        client = authenticate_client(self.store, form, authorization, f"{origin}/auth/token",
                                     self.client_keys)
        self.tokens.revoke(form.get("token", ""), client.client_id)
        self._tell("token-revoked", {"client_id": client.client_id, "site": origin,
                                     "remote": remote})

    def authorize(self, params: Mapping[str, str], form: Mapping[str, str] | None,
                  fhir_base: str, patient_exists: Callable[[str], bool],
                  remote: str | None = None) -> authorize.Redirect | authorize.SignIn:
        """GET shows the sign-in page; POST (``form``) decides."""
        try:
            request = authorize.check_request(self.store, params, fhir_base)
        except OAuthError as error:  # the redirect URI was checked first: send it there
            return authorize.error_redirect(params, error)
        if form is None:
            return authorize.sign_in_page(request)
        outcome = authorize.decide(self.store, request, form, patient_exists)
        event = "login" if isinstance(outcome, authorize.Redirect) else "login-failed"
        self._tell(event, {"client_id": request.client.client_id,
                           "user": form.get("username"), "site": fhir_base, "remote": remote,
                           "error": getattr(outcome, "problem", None)})
        return outcome

    def smart_configuration(self, origin: str) -> dict[str, Any]:
        """``.well-known/smart-configuration`` (SMART App Launch 2.0, section 2.6)."""
        if self.external is not None:
            return self.external.smart_configuration()
        auth = f"{origin}/auth"
        return {
            "issuer": auth, "jwks_uri": f"{auth}/jwks",
            "authorization_endpoint": f"{auth}/authorize", "token_endpoint": f"{auth}/token",
            "introspection_endpoint": f"{auth}/introspect",
            "revocation_endpoint": f"{auth}/revoke",
            "grant_types_supported": list(GRANT_TYPES),
            "token_endpoint_auth_methods_supported": ["private_key_jwt",
                                                      "client_secret_basic",
                                                      "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "scopes_supported": list(SCOPES_SUPPORTED), "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"], "capabilities": list(CAPABILITIES)}

    def _tell(self, event: str, details: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event, details)
