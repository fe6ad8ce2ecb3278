"""The authorization endpoint (SMART App Launch 2.0): sign-in, consent, authorization code.

``GET /auth/authorize`` checks the request and shows a sign-in page that
lists what the app asks for; ``POST`` (the page's form) checks the password
and redirects back to the app with a one-time code (or ``access_denied``).
Errors that make the redirect URI untrustworthy (unknown client, unregistered
redirect URI) are shown on the page instead: never redirect to a URI the
client did not register.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from urllib.parse import urlencode

from hygeia.fhir.datetime import now_us
from hygeia.server.auth.clients import OAuthError
from hygeia.server.auth.scopes import Scopes
from hygeia.server.auth.secrets import check_password, digest, hash_password, new_handle
from hygeia.server.auth.tokens import SECOND, Grant, requested_scopes
from hygeia.store import AuthStore, Client, Handle, User

CODE = "code"
LAUNCH = "launch"
CODE_SECONDS = 120  # an authorization code must be exchanged within this
LAUNCH_SECONDS = 3600
# wrong passwords in a row before a user is locked out, and for how long: slows guessing
# to a few tries per quarter hour without letting a stranger lock a user out for long
SIGN_IN_LIMIT = 5
LOCK_SECONDS = 900
# one answer for every failed sign-in: unknown name, wrong password or locked out alike
SIGN_IN_REFUSED = (f"Wrong username or password, or too many wrong passwords in a row (then "
                   f"wait {LOCK_SECONDS // 60} minutes).")
# carried through the sign-in form unchanged
REQUEST_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud",
                  "code_challenge", "code_challenge_method", "launch", "nonce")


class PageError(Exception):
    """An error shown on the page rather than sent to the redirect URI."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send the browser to ``url`` (302)."""

    url: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """Show the sign-in page for ``request`` (with ``problem`` after a failed try)."""

    request: dict[str, str]
    client: Client
    scopes: Scopes
    needs_patient: bool
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A checked authorization request."""

    params: dict[str, str]
    client: Client
    scopes: Scopes  # what was asked, within what the client may ever get
    launch: dict[str, str]  # the EHR launch context, when launched from one

    def error(self, error: str, description: str) -> Redirect:
        return _back(self.params, {"error": error, "error_description": description})


def check_request(store: AuthStore, params: Mapping[str, str],
                  fhir_base: str) -> AuthorizeRequest:
    """Validate an authorization request; :class:`PageError` or :class:`OAuthError` if bad."""
    wanted = {name: params[name] for name in REQUEST_FIELDS if params.get(name)}
    client = store.client(wanted.get("client_id", ""))
    if client is None or not client.active:
        raise PageError(f"There is no active app with client id '{wanted.get('client_id')}'.")
    if wanted.get("redirect_uri") not in client.redirect_uris:
        raise PageError("The redirect_uri is not one the app registered.")
    if wanted.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "Only response_type=code is supported.")
    if wanted.get("aud", "").rstrip("/") != fhir_base.rstrip("/"):
        raise OAuthError("invalid_request", f"aud must be this FHIR server, {fhir_base}.")
    if not wanted.get("code_challenge") or wanted.get("code_challenge_method") != "S256":
        raise OAuthError("invalid_request", "PKCE is required: send code_challenge with "
                         "code_challenge_method=S256.")
    launch = _launch_context(store, wanted.get("launch"))
    scopes = requested_scopes(wanted.get("scope", "")).within(Scopes.parse(client.scopes))
    if scopes.empty:
        raise OAuthError("invalid_scope", "None of the requested scopes is one this app is "
                         "registered for.")
    return AuthorizeRequest(wanted, client, scopes, launch)


def _launch_context(store: AuthStore, launch: str | None) -> dict[str, str]:
    if not launch:
        return {}
    handle = store.handle(digest(launch), LAUNCH)
    if handle is None or handle.expires <= now_us():
        raise OAuthError("invalid_request", "The launch parameter names no current launch.")
    return {k: str(v) for k, v in handle.data.items() if v}


def sign_in_page(request: AuthorizeRequest, problem: str | None = None) -> SignIn:
    needs_patient = (request.scopes.has("launch/patient") and "patient" not in request.launch)
    return SignIn(request.params, request.client, request.scopes, needs_patient, problem)


def decide(store: AuthStore, request: AuthorizeRequest, form: Mapping[str, str],
           patient_exists: Callable[[str], bool]) -> Redirect | SignIn:
    """Handle the sign-in form: a code for the app, a denial, or the page again."""
    if form.get("decision") != "allow":
        return request.error("access_denied", "The user did not allow the app access.")
    user = _signed_in(store, form.get("username", ""), form.get("password", ""))
    if user is None:
        return sign_in_page(request, SIGN_IN_REFUSED)
    patient = _patient(request, user, form.get("patient", "").strip())
    if patient is None and request.scopes.has("launch/patient"):
        return sign_in_page(request, "Choose the patient the app is for.")
    if patient is not None and not patient_exists(patient):
        return sign_in_page(request, f"There is no Patient/{patient}.")
    return _code(store, request, user, patient)


def _signed_in(store: AuthStore, username: str, password: str) -> User | None:
    """The user whose password this is, or None, at the same cost and in the same words
    whether the name is unknown, the password wrong or the user locked out: a stranger
    cannot tell from the answer or its timing which names exist (one scrypt hash each
    time, against a stand-in hash for unknown names)."""
    user = store.user(username)
    now = now_us()
    known = user is not None and user.active
    matches = check_password(password, user.password_hash if user is not None and known
                             else _stand_in_hash())
    if user is None or not known:
        return None
    if user.locked_until is not None and user.locked_until > now:
        return None
    if not matches:
        store.note_sign_in(user.username, False, now=now, limit=SIGN_IN_LIMIT,
                           lock_us=LOCK_SECONDS * SECOND)
        return None
    if user.failed_logins:
        store.note_sign_in(user.username, True, now=now, limit=SIGN_IN_LIMIT, lock_us=0)
    return user


@cache
def _stand_in_hash() -> str:
    """A password hash no password is known for, checked when the user is unknown."""
    return hash_password(new_handle())


def _patient(request: AuthorizeRequest, user: User, chosen: str) -> str | None:
    """The patient in context: the launch's, the user's own record, or the one chosen."""
    if user.fhir_user and user.fhir_user.startswith("Patient/"):
        return user.fhir_user.partition("/")[2]
    if "patient" in request.launch:
        return request.launch["patient"]
    return chosen or None


def _code(store: AuthStore, request: AuthorizeRequest, user: User,
          patient: str | None) -> Redirect:
    params = request.params
    grant = Grant(request.client.client_id, request.scopes, user.username,
                  params["aud"].rstrip("/"), user.fhir_user, patient,
                  request.launch.get("encounter"))
    code = new_handle()
    data = {**grant.to_json(), "redirect_uri": params["redirect_uri"],
            "code_challenge": params["code_challenge"], "nonce": params.get("nonce")}
    store.add_handle(Handle(digest(code), CODE, request.client.client_id, data,
                            now_us() + CODE_SECONDS * SECOND, None))
    return _back(params, {"code": code})


def redeem_code(store: AuthStore, client: Client, form: Mapping[str, str]) -> Grant:
    """The grant behind an authorization code, checked against its request (RFC 6749, 7636)."""
    handle = store.spend_handle(digest(form.get("code", "")), CODE, now_us())
    if handle is None or handle.client_id != client.client_id:
        raise OAuthError("invalid_grant", "The authorization code is unknown, expired or "
                         "used already.")
    data = handle.data
    if form.get("redirect_uri") != data["redirect_uri"]:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization "
                         "request's.")
    if not _pkce_matches(form.get("code_verifier", ""), data["code_challenge"]):
        raise OAuthError("invalid_grant", "The code_verifier does not match the "
                         "code_challenge.")
    return replace(Grant.from_json(data), nonce=data.get("nonce"))


def _pkce_matches(verifier: str, challenge: str) -> bool:
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return bool(verifier) and hmac.compare_digest(computed.rstrip(b"=").decode(), challenge)


def new_launch(store: AuthStore, patient: str | None, encounter: str | None) -> str:
    """An EHR launch id carrying the patient (and encounter) the app opens on."""
    launch = new_handle()
    store.add_handle(Handle(digest(launch), LAUNCH, "*",
                            {"patient": patient, "encounter": encounter},
                            now_us() + LAUNCH_SECONDS * SECOND, None))
    return launch


def error_redirect(params: Mapping[str, str], error: OAuthError) -> Redirect:
    """An error sent back to the app's (already checked) redirect URI."""
    return _back(params, {"error": error.error, "error_description": error.description})


def _back(params: Mapping[str, str], answer: dict[str, str]) -> Redirect:
    if params.get("state"):
        answer["state"] = params["state"]
    uri = params["redirect_uri"]
    return Redirect(uri + ("&" if "?" in uri else "?") + urlencode(answer))
