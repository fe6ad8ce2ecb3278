"""The authorization server over real HTTP: discovery, every grant, refresh, revocation,
introspection, EHR launch, the errors clients see, and a real SMART client library."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from fhirclient import client as smart_client

from tests.api.smart import (
    ASSERTION_TYPE,
    REDIRECT,
    BackendKey,
    authorization_code,
    backend_token,
    bearer,
    cli_json,
    hygeia,
    origin_of,
    pkce,
    user_token,
)
from tests.conftest import ServerProcess

PASSWORD = "s3cret-enough"
APP_SCOPES = "launch launch/patient openid fhirUser patient/*.rs offline_access"


@dataclass
class Setup:
    server: ServerProcess
    origin: str
    app: str  # a public app with a redirect URI
    confidential: str
    secret: str
    backend: str
    key: BackendKey
    rsa_backend: str
    rsa_key: BackendKey
    db_url: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("oauth")
    url = f"sqlite:///{folder}/oauth.db"
    key, rsa_key = BackendKey(folder), BackendKey(folder, "RS384")
    app = cli_json("auth", "client", "create", "--db", url, "--name", "App", "--scopes",
                   APP_SCOPES, "--redirect-uri", REDIRECT)["client_id"]
    confidential = cli_json("auth", "client", "create", "--db", url, "--name", "Portal",
                            "--scopes", "patient/*.rs offline_access", "--secret",
                            "--redirect-uri", REDIRECT)
    backend = cli_json("auth", "client", "create", "--db", url, "--name", "Nightly",
                       "--scopes", "system/Patient.rs system/Observation.rs",
                       "--jwks-file", str(key.jwks_file))["client_id"]
    rsa_backend = cli_json("auth", "client", "create", "--db", url, "--name", "RSA",
                           "--scopes", "system/*.rs", "--jwks-file",
                           str(rsa_key.jwks_file))["client_id"]
    cli_json("auth", "user", "create", "--db", url, "--username", "doc", "--password-stdin",
             "--practitioner", "d1", stdin=PASSWORD)
    server = ServerProcess(url, "--auth", "--secret-key-file", str(folder / "secret.key"))
    try:
        made = Setup(server, origin_of(server.base), app, confidential["client_id"],
                     confidential["client_secret"], backend, key, rsa_backend, rsa_key, url)
        created = server.client.put("Patient/p1", headers=bearer(_writer_token(made)), json={
            "resourceType": "Patient", "id": "p1", "name": [{"family": "Ng"}]})
        assert created.status_code == 201, created.text
        # a user linked to a Patient is created once that Patient exists
        cli_json("auth", "user", "create", "--db", url, "--username", "pat", "--password-stdin",
                 "--patient", "p1", stdin=PASSWORD)
        yield made
    finally:
        server.stop()


def test_discovery_advertises_the_endpoints(setup: Setup) -> None:
    for path in ("/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"):
        config = httpx.get(setup.origin + path).json()
        assert config["token_endpoint"] == f"{setup.origin}/auth/token"
        assert config["authorization_endpoint"] == f"{setup.origin}/auth/authorize"
        assert config["jwks_uri"] == f"{setup.origin}/auth/jwks"
        assert "S256" in config["code_challenge_methods_supported"]
        assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    keys = httpx.get(f"{setup.origin}/auth/jwks").json()["keys"]
    assert keys and all("d" not in key for key in keys)  # public halves only
    statement = httpx.get(f"{setup.server.base}/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_backend_services_with_es384_and_rs384(setup: Setup) -> None:
    for client_id, key in ((setup.backend, setup.key), (setup.rsa_backend, setup.rsa_key)):
        response = backend_token(setup.server.base, client_id, key, "system/Patient.rs")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "system/Patient.rs"
        assert response.headers["cache-control"] == "no-store"
        search = setup.server.client.get("Patient", headers=bearer(body["access_token"]))
        assert search.status_code == 200


def test_a_backend_gets_only_its_registered_scopes(setup: Setup) -> None:
    response = backend_token(setup.server.base, setup.backend, setup.key,
                             "system/*.cruds system/Observation.rs")
    assert response.json()["scope"] == "system/Observation.rs"
    refused = backend_token(setup.server.base, setup.backend, setup.key, "system/Encounter.rs")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(("change", "why"), [
    ({"aud": "http://elsewhere/auth/token"}, "does not verify"),
    ({"exp": 10}, "does not verify"),
    ({"sub": "someone-else"}, "sub must equal"),
])
def test_bad_client_assertions_are_refused(setup: Setup, change: dict[str, object],
                                           why: str) -> None:
    token_url = f"{setup.origin}/auth/token"
    response = httpx.post(token_url, data={
        "grant_type": "client_credentials", "scope": "system/Patient.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": setup.key.assertion(setup.backend, token_url, **change)})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert why in response.json()["error_description"]


def test_an_assertion_passes_once(setup: Setup) -> None:
    token_url = f"{setup.origin}/auth/token"
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": setup.key.assertion(setup.backend, token_url)}
    assert httpx.post(token_url, data=form).status_code == 200
    replay = httpx.post(token_url, data=form)
    assert replay.status_code == 401 and "used already" in replay.json()["error_description"]


def test_a_signature_by_another_key_is_refused(setup: Setup, tmp_path: Path) -> None:
    stranger = BackendKey(tmp_path)
    stranger.kid = setup.key.kid  # claims to be the registered key
    response = backend_token(setup.server.base, setup.backend, stranger, "system/Patient.rs")
    assert response.status_code == 401


def test_standalone_patient_launch_refresh_and_revoke(setup: Setup) -> None:
    body = user_token(setup.server.base, setup.app, "pat", PASSWORD, APP_SCOPES)
    assert body["patient"] == "p1" and "id_token" in body and "refresh_token" in body
    refreshed = httpx.post(f"{setup.origin}/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "client_id": setup.app})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["patient"] == "p1"
    access = refreshed.json()["access_token"]
    assert setup.server.client.get("Patient/p1", headers=bearer(access)).status_code == 200
    revoked = httpx.post(f"{setup.origin}/auth/revoke",
                         data={"token": access, "client_id": setup.app})
    assert revoked.status_code == 200
    after = setup.server.client.get("Patient/p1", headers=bearer(access))
    assert after.status_code == 401
    assert after.json()["resourceType"] == "OperationOutcome"
    assert "invalid_token" in after.headers["www-authenticate"]
    # a refresh token works once (its replay also revokes its family: test_smart_hardening)
    again = httpx.post(f"{setup.origin}/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "client_id": setup.app})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_code_works_once_and_needs_its_verifier(setup: Setup) -> None:
    code, verifier = authorization_code(setup.server.base, setup.app, "pat", PASSWORD,
                                        APP_SCOPES)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": setup.app, "code_verifier": "wrong" + verifier}
    wrong = httpx.post(f"{setup.origin}/auth/token", data=form)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # the failed try spent the code: a stolen code is worth one guess
    right = httpx.post(f"{setup.origin}/auth/token", data={**form, "code_verifier": verifier})
    assert right.status_code == 400


def test_sign_in_page_errors(setup: Setup) -> None:
    _, challenge = pkce()
    params = {"response_type": "code", "client_id": setup.app, "redirect_uri": REDIRECT,
              "scope": APP_SCOPES, "state": "x", "aud": setup.server.base,
              "code_challenge": challenge, "code_challenge_method": "S256"}
    authorize = f"{setup.origin}/auth/authorize"
    wrong_password = httpx.post(authorize, data={**params, "username": "pat",
                                                 "password": "nope", "decision": "allow"})
    assert wrong_password.status_code == 401
    assert "Wrong username or password" in wrong_password.text
    unregistered = httpx.get(authorize, params={**params, "redirect_uri": "http://evil/cb"})
    assert unregistered.status_code == 400 and "location" not in unregistered.headers
    wrong_aud = httpx.get(authorize, params={**params, "aud": "http://elsewhere/fhir"})
    assert wrong_aud.status_code == 302
    assert parse_qs(urlsplit(wrong_aud.headers["location"]).query)["error"] == [
        "invalid_request"]
    no_pkce = httpx.get(authorize, params={k: v for k, v in params.items()
                                           if not k.startswith("code_challenge")})
    assert "PKCE" in parse_qs(urlsplit(no_pkce.headers["location"]).query)[
        "error_description"][0]
    denied = httpx.post(authorize, data={**params, "decision": "deny"})
    assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]


def test_ehr_launch_carries_the_patient(setup: Setup) -> None:
    launch = cli_json("auth", "launch", "create", "--db", setup.db_url,
                      "--patient", "p1")["launch"]
    body = user_token(setup.server.base, setup.app, "doc", PASSWORD,
                      "launch openid fhirUser patient/*.rs", launch=launch)
    assert body["patient"] == "p1"


def test_a_practitioner_chooses_the_patient_in_a_standalone_launch(setup: Setup) -> None:
    body = user_token(setup.server.base, setup.app, "doc", PASSWORD,
                      "launch/patient patient/*.rs", patient="p1")
    assert body["patient"] == "p1"
    missing = authorization_code  # a patient that does not exist is refused on the page
    with pytest.raises(AssertionError):
        missing(setup.server.base, setup.app, "doc", PASSWORD, "launch/patient patient/*.rs",
                patient="nobody")


def test_confidential_client_secret_and_introspection(setup: Setup) -> None:
    code, verifier = authorization_code(setup.server.base, setup.confidential, "pat",
                                        PASSWORD, "patient/*.rs offline_access")
    token_url = f"{setup.origin}/auth/token"
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier}
    no_secret = httpx.post(token_url, data={**form, "client_id": setup.confidential})
    assert no_secret.status_code == 401 and no_secret.json()["error"] == "invalid_client"
    body = httpx.post(token_url, data=form, auth=(setup.confidential, setup.secret)).json()
    introspected = httpx.post(f"{setup.origin}/auth/introspect",
                              data={"token": body["access_token"]},
                              auth=(setup.confidential, setup.secret)).json()
    assert introspected["active"] is True and introspected["patient"] == "p1"
    assert introspected["scope"] == "patient/*.rs offline_access"
    junk = httpx.post(f"{setup.origin}/auth/introspect", data={"token": "junk"},
                      auth=(setup.confidential, setup.secret)).json()
    assert junk == {"active": False}
    wrong = httpx.post(f"{setup.origin}/auth/introspect", data={"token": "junk"},
                       auth=(setup.confidential, "not-the-secret"))
    assert wrong.status_code == 401


def test_token_endpoint_errors_use_oauth_format(setup: Setup) -> None:
    token_url = f"{setup.origin}/auth/token"
    assert httpx.post(token_url, data={"grant_type": "password"}).json()["error"] == \
        "unsupported_grant_type"
    unknown = httpx.post(token_url, data={"grant_type": "client_credentials",
                                          "client_id": "nobody"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    json_body = httpx.post(token_url, json={"grant_type": "client_credentials"})
    assert json_body.status_code == 400 and json_body.json()["error"] == "invalid_request"


def test_key_rotation_keeps_old_tokens_valid(setup: Setup) -> None:
    before = backend_token(setup.server.base, setup.rsa_backend, setup.rsa_key,
                           "system/*.rs").json()["access_token"]
    rotated = cli_json("auth", "key", "rotate", "--db", setup.db_url, "--secret-key-file",
                       str(Path(setup.db_url[len("sqlite:///"):]).with_name("secret.key")))
    assert setup.server.client.get("Patient", headers=bearer(before)).status_code == 200
    deadline = time.monotonic() + 15  # the server reads the keys again within 5 s
    while time.monotonic() < deadline:
        keys = {key["kid"] for key in httpx.get(f"{setup.origin}/auth/jwks").json()["keys"]}
        if rotated["kid"] in keys:
            break
        time.sleep(0.5)
    assert rotated["kid"] in keys and len(keys) >= 2
    after = backend_token(setup.server.base, setup.rsa_backend, setup.rsa_key,
                          "system/*.rs").json()["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == rotated["kid"]
    for token in (before, after):
        assert setup.server.client.get("Patient", headers=bearer(token)).status_code == 200


def test_duplicate_registration_is_a_clear_error(setup: Setup) -> None:
    result = hygeia("auth", "client", "create", "--db", setup.db_url, "--name", "x",
                    "--scopes", "system/*.rs", "--client-id", setup.backend)
    assert result.returncode == 1 and "exists already" in result.stderr


def test_fhirclient_library_completes_the_launch(setup: Setup) -> None:
    """The SMART Python client: discovery, authorize URL with PKCE, callback, token, read."""
    settings = {"app_id": setup.app, "api_base": setup.server.base,
                "redirect_uri": REDIRECT, "scope": "openid fhirUser patient/*.rs"}
    smart = smart_client.FHIRClient(settings=settings)
    smart.wants_patient = True
    browser_url = smart.authorize_url  # what the app sends the browser to
    params = {k: v[0] for k, v in parse_qs(urlsplit(browser_url).query).items()}
    assert params["code_challenge_method"] == "S256"
    answer = httpx.post(f"{setup.origin}/auth/authorize", data={
        **params, "username": "pat", "password": PASSWORD, "decision": "allow"})
    assert answer.status_code == 302, answer.text
    smart.handle_callback(answer.headers["location"])
    assert smart.ready and smart.patient_id == "p1"
    assert smart.patient.name[0].family == "Ng"  # read through the library, with its token


def _writer_token(setup: Setup) -> str:
    """A token that may write Patient (registered on the fly for this test)."""
    folder = Path(setup.db_url[len("sqlite:///"):]).parent
    key = BackendKey(folder)
    client = cli_json("auth", "client", "create", "--db", setup.db_url, "--name",
                      f"writer-{uuid.uuid4().hex[:6]}", "--scopes", "system/Patient.cu",
                      "--jwks-file", str(key.jwks_file))["client_id"]
    response = backend_token(setup.server.base, client, key, "system/Patient.cu")
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_auth_is_on_beyond_loopback(tmp_path: Path) -> None:
    """Bound to every address, the server needs tokens even without --auth."""
    server = ServerProcess(f"sqlite:///{tmp_path}/open.db", "--host", "0.0.0.0",
                           "--base-url", "https://fhir.example.org")
    try:
        refused = server.client.get("Patient")
        assert refused.status_code == 401
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert "Bearer" in refused.headers["www-authenticate"]
        assert server.client.get("metadata").status_code == 200  # discovery stays open
    finally:
        server.stop()


def test_loopback_without_auth_says_so_loudly(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path}/dev.db")
    try:
        assert server.client.get("Patient").status_code == 200
    finally:
        server.stop()
    assert server.process.stderr is not None
    assert "NO AUTHENTICATION" in server.process.stderr.read().decode()


def test_browser_apps_get_cors(setup: Setup) -> None:
    for url in (f"{setup.origin}/auth/token", f"{setup.server.base}/Patient"):
        preflight = httpx.options(url, headers={
            "Origin": "https://app.example.org", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 204
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    refused = httpx.get(f"{setup.server.base}/Patient",
                        headers={"Origin": "https://app.example.org"})
    assert refused.status_code == 401  # CORS lets the browser read the refusal, nothing more
    assert refused.headers["access-control-allow-origin"] == "*"
    assert "WWW-Authenticate" in refused.headers["access-control-expose-headers"]


def test_password_guessing_locks_the_user_out(setup: Setup) -> None:
    cli_json("auth", "user", "create", "--db", setup.db_url, "--username", "target",
             "--password-stdin", "--patient", "p1", stdin=PASSWORD)
    _, challenge = pkce()
    params = {"response_type": "code", "client_id": setup.app, "redirect_uri": REDIRECT,
              "scope": "patient/*.rs", "aud": setup.server.base, "code_challenge": challenge,
              "code_challenge_method": "S256", "username": "target", "decision": "allow"}
    authorize = f"{setup.origin}/auth/authorize"
    for attempt in range(5):
        wrong = httpx.post(authorize, data={**params, "password": f"guess-{attempt}"})
        assert "Wrong username or password" in wrong.text
    locked = httpx.post(authorize, data={**params, "password": PASSWORD})
    # the same words as for a wrong password: a lockout must not reveal that the user exists
    assert locked.status_code == 401 and "too many wrong passwords" in locked.text
    assert "location" not in locked.headers


def test_no_secret_reaches_the_log(tmp_path: Path) -> None:
    """With the access log on, passwords, client secrets, codes and tokens stay out of it."""
    url = f"sqlite:///{tmp_path}/logged.db"
    client = cli_json("auth", "client", "create", "--db", url, "--name", "Portal", "--scopes",
                      "user/*.rs offline_access", "--secret", "--redirect-uri", REDIRECT)
    cli_json("auth", "user", "create", "--db", url, "--username", "pat", "--password-stdin",
             "--practitioner", "d1", stdin=PASSWORD)
    log_file = tmp_path / "access.log"
    with log_file.open("wb") as access_log:
        server = ServerProcess(url, "--auth", "--access-log", stdout=access_log)
    try:
        code, verifier = authorization_code(server.base, client["client_id"], "pat", PASSWORD,
                                            "user/*.rs offline_access")
        body = httpx.post(f"{origin_of(server.base)}/auth/token", auth=(
            client["client_id"], client["client_secret"]), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier}).json()
        server.client.get("Patient", headers=bearer(body["access_token"]))
    finally:
        server.stop()
    log = log_file.read_text()
    assert "/auth/token" in log  # the access log did record the requests
    for secret in (PASSWORD, client["client_secret"], code, verifier, body["access_token"],
                   body["refresh_token"]):
        assert secret not in log


def test_sign_ins_and_tokens_are_in_the_audit_trail(setup: Setup, tmp_path: Path) -> None:
    key = BackendKey(tmp_path)
    auditor = cli_json("auth", "client", "create", "--db", setup.db_url, "--name", "Auditor",
                       "--scopes", "system/AuditEvent.rs", "--jwks-file",
                       str(key.jwks_file))["client_id"]
    _, challenge = pkce()
    httpx.post(f"{setup.origin}/auth/authorize", data={
        "response_type": "code", "client_id": setup.app, "redirect_uri": REDIRECT,
        "scope": "patient/*.rs", "aud": setup.server.base, "code_challenge": challenge,
        "code_challenge_method": "S256", "username": "doc", "password": "not-it",
        "decision": "allow"})
    token = backend_token(setup.server.base, auditor, key, "system/AuditEvent.rs").json()
    trail = setup.server.client.get(
        "AuditEvent", params={"type": "110114", "_count": "200", "_sort": "-date"},
        headers=bearer(token["access_token"])).json()
    events = [entry["resource"] for entry in trail["entry"]]
    refused = [e for e in events if e["outcome"] == "4" and "sign-in refused" in
               e.get("outcomeDesc", "")]
    issued = [e for e in events if e["outcome"] == "0" and "access token issued" in
              e.get("outcomeDesc", "")]
    assert refused and issued
    who = {agent.get("who", {}).get("identifier", {}).get("value")
           for event in issued for agent in event["agent"]}
    assert auditor in who  # the token just issued to the auditor is itself recorded
    assert all("not-it" not in json.dumps(event) for event in events)
