"""Issue 13's authorization attacks, replayed through real HTTP on both databases.

Scope escalation at the token endpoint (a registered ``*`` granting AuditEvent),
SMART's syntax and ``invalid_scope`` rules, a patient token writing into
another patient's record, user enumeration at sign-in, tokens outliving a
client rotation or a replayed refresh token, ``jku`` and clients registered by
JWKS URL (fetched through the guarded outbound client), and the bulk
manifest's ``requiresAccessToken``.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.api.smart import (
    ASSERTION_TYPE,
    REDIRECT,
    BackendKey,
    backend_token,
    bearer,
    cli_json,
    origin_of,
    pkce,
    user_token,
)
from tests.conftest import BACKENDS, ServerProcess, _drop_database

PASSWORD = "s3cret-enough"
APP_SCOPES = "launch/patient openid fhirUser patient/*.cruds offline_access"


class KeyHost:
    """A JWKS server of the test's own on 127.0.0.1, counting the fetches per path."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        self.fetches: dict[str, int] = {}
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.fetches[self.path] = host.fetches.get(self.path, 0) + 1
                body = httpx.Response(200, json=host.keys).content
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    server: ServerProcess
    origin: str
    db_url: str
    key: BackendKey
    wild: str  # system/*.rs, keys registered inline
    writer: str  # system/*.cruds
    app: str  # a public app, patient/*.cruds
    by_url: str  # keys at a JWKS URL on 127.0.0.1 (allow-listed)
    private_url: str  # keys at a JWKS URL on 127.0.0.2 (not allow-listed)
    keys: KeyHost
    url_key: BackendKey

    def write_token(self) -> str:
        response = backend_token(self.server.base, self.writer, self.key, "system/*.cruds")
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("hardening")
    if request.param == "sqlite":
        url = f"sqlite:///{folder}/auth.db"
    else:
        url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + \
            f"/hygeia_auth_{uuid.uuid4().hex[:8]}"
    key, url_key = BackendKey(folder), BackendKey(folder)
    keys = KeyHost(_jwks(url_key))

    def client(name: str, scopes: str, *credentials: str) -> str:
        return str(cli_json("auth", "client", "create", "--db", url, "--name", name,
                            "--scopes", scopes, *credentials)["client_id"])

    inline = ("--jwks-file", str(key.jwks_file))
    made = dict(
        wild=client("Wild", "system/*.rs", *inline),
        writer=client("Writer", "system/*.cruds", *inline),
        app=client("App", APP_SCOPES, "--redirect-uri", REDIRECT),
        by_url=client("By URL", "system/*.rs", "--jwks-url", keys.url("/jwks.json")),
        private_url=client("Private", "system/*.rs", "--jwks-url",
                           keys.url("/jwks.json", "127.0.0.2")))
    server = ServerProcess(url, "--auth", "--workers", "2", "--secret-key-file",
                           str(folder / "secret.key"), "--outbound-allow", "127.0.0.1")
    try:
        world = World(server, origin_of(server.base), url, key, keys=keys, url_key=url_key,
                      **made)
        token = world.write_token()
        for pid in ("pa", "pb", "pc"):
            put = server.client.put(f"Patient/{pid}", headers=bearer(token), json={
                "resourceType": "Patient", "id": pid, "name": [{"family": pid}]})
            assert put.status_code in (200, 201), put.text
        # a user linked to a Patient is created once that Patient exists
        for name, patient in (("alice", "pa"), ("carol", "pc")):
            cli_json("auth", "user", "create", "--db", url, "--username", name,
                     "--password-stdin", "--patient", patient, stdin=PASSWORD)
        yield world
    finally:
        server.stop()
        keys.close()
        if request.param != "sqlite":
            _drop_database(url)


def _jwks(key: BackendKey) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(key.jwks_file.read_text())
    return loaded


def _assertion(key: BackendKey, client_id: str, token_url: str, **headers: str) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key.private, algorithm=key.algorithm,
                      headers={"kid": key.kid, **headers})


def _backend(world: World, client_id: str, key: BackendKey, scope: str,
             **headers: str) -> httpx.Response:
    token_url = f"{world.origin}/auth/token"
    return httpx.post(token_url, data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(key, client_id, token_url, **headers)})


def _oauth_error(response: httpx.Response, status: int, error: str) -> str:
    """The RFC 6749 error body of ``response``; its description."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    return str(body["error_description"])


def _outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


# ------------------------------------------------------------ item 3: scope narrowing


def test_a_wildcard_client_cannot_grant_itself_the_audit_trail(world: World) -> None:
    response = _backend(world, world.wild, world.key, "system/AuditEvent.rs system/*.rs")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.rs"
    token = response.json()["access_token"]
    assert world.server.client.get("Patient", headers=bearer(token)).status_code == 200
    _outcome(world.server.client.get("AuditEvent", headers=bearer(token)), 403)
    alone = _backend(world, world.wild, world.key, "system/AuditEvent.rs")
    _oauth_error(alone, 400, "invalid_scope")


def test_a_public_app_cannot_obtain_the_patients_audit_trail(world: World) -> None:
    body = user_token(world.server.base, world.app, "alice", PASSWORD,
                      "launch/patient openid patient/AuditEvent.rs patient/*.cruds")
    assert "AuditEvent" not in body["scope"] and "patient/*.cruds" in body["scope"]
    _outcome(world.server.client.get("AuditEvent", headers=bearer(body["access_token"])),
             403)
    _, challenge = pkce()
    page = httpx.get(f"{world.origin}/auth/authorize", params={
        "response_type": "code", "client_id": world.app, "redirect_uri": REDIRECT,
        "scope": "patient/AuditEvent.rs", "state": "s", "aud": world.server.base,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    assert page.status_code == 302
    assert parse_qs(urlsplit(page.headers["location"]).query)["error"] == ["invalid_scope"]


# ------------------------------------------------------------ SMART scope details


def test_a_v1_request_is_granted_in_v1(world: World) -> None:
    response = _backend(world, world.wild, world.key, "system/*.read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.read"
    token = response.json()["access_token"]
    assert world.server.client.get("Patient/pa", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("scope", ["system/Foo.read", "system/Patient.xyz", "system/Patient",
                                   "system/*.cruds"])
def test_unknown_malformed_or_ungranted_scopes_are_invalid_scope(world: World,
                                                                 scope: str) -> None:
    # system/*.cruds: the writes are narrowed away, the reads stay
    response = _backend(world, world.wild, world.key, scope)
    if scope == "system/*.cruds":
        assert response.status_code == 200 and response.json()["scope"] == "system/*.rs"
        return
    description = _oauth_error(response, 400, "invalid_scope")
    assert scope in description


# ------------------------------------------------------------ item 8: other patients


def _observation(performer: str, id: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/pa"}, "performer": [{"reference": performer}]}
    if id:
        resource["id"] = id
    return resource


def _everything_of_b(world: World) -> list[str]:
    response = world.server.client.get("Patient/pb/$everything",
                                       headers=bearer(world.write_token()))
    assert response.status_code == 200, response.text
    return [entry["resource"]["resourceType"] for entry in response.json().get("entry", [])]


def test_a_patient_token_cannot_write_into_another_patients_record(world: World) -> None:
    token = user_token(world.server.base, world.app, "alice", PASSWORD,
                       APP_SCOPES)["access_token"]
    client, auth = world.server.client, bearer(token)
    refused = _outcome(client.post("Observation", headers=auth,
                                   json=_observation("Patient/pb")), 403)
    assert "Observation.performer" in refused["issue"][0]["expression"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _observation("Patient/pb"), "request": {"method": "POST",
                                                             "url": "Observation"}}]}
    _outcome(client.post("", headers=auth, json=bundle), 403)
    own = client.post("Observation", headers=auth, json=_observation("Patient/pa"))
    assert own.status_code == 201, own.text
    changed = _observation("Patient/pb", own.json()["id"])
    _outcome(client.put(f"Observation/{own.json()['id']}", headers=auth, json=changed), 403)
    conditional = client.put("Observation?_id=" + own.json()["id"], headers=auth, json=changed)
    _outcome(conditional, 403)
    patch = [{"op": "add", "path": "/performer/-", "value": {"reference": "Patient/pb"}}]
    patched = client.patch(f"Observation/{own.json()['id']}", content=json.dumps(patch),
                           headers={**auth, "Content-Type": "application/json-patch+json"})
    _outcome(patched, 403)
    assert _everything_of_b(world) == ["Patient"]


# ------------------------------------------------------------ item 13: enumeration


def _sign_in(world: World, username: str, password: str) -> tuple[float, str]:
    _, challenge = pkce()
    form = {"response_type": "code", "client_id": world.app, "redirect_uri": REDIRECT,
            "scope": APP_SCOPES, "state": "s", "aud": world.server.base,
            "code_challenge": challenge, "code_challenge_method": "S256",
            "username": username, "password": password, "decision": "allow"}
    started = time.perf_counter()
    response = httpx.post(f"{world.origin}/auth/authorize", data=form)
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.text
    return elapsed, response.text.replace(challenge, "")


def test_unknown_users_and_wrong_passwords_look_the_same(world: World) -> None:
    real, unknown = [], []
    for attempt in range(9):  # interleaved, so a busy machine slows both alike
        real.append(_sign_in(world, "alice", "wrong-password"))
        unknown.append(_sign_in(world, f"nobody-{attempt}", "wrong-password"))
        if attempt % 4 == 3:  # a right password resets alice's count: no lockout here
            user_token(world.server.base, world.app, "alice", PASSWORD, APP_SCOPES)
    user_token(world.server.base, world.app, "alice", PASSWORD, APP_SCOPES)
    ratio = statistics.median(t for t, _ in real) / statistics.median(t for t, _ in unknown)
    assert 0.5 <= ratio <= 2.0, ratio
    assert {body for _, body in real} == {body for _, body in unknown}
    # a locked-out user reads exactly what a stranger reads
    for _ in range(6):
        _, locked = _sign_in(world, "carol", "wrong-password")
    assert locked == unknown[0][1]
    _, right_but_locked = _sign_in(world, "carol", PASSWORD)
    assert right_but_locked == unknown[0][1]


# ------------------------------------------------------------ item 16: revocation


def test_a_client_rotation_revokes_its_earlier_tokens(world: World, tmp_path: Path) -> None:
    made = cli_json("auth", "client", "create", "--db", world.db_url, "--name", "Rotating",
                    "--scopes", "system/*.rs", "--secret")
    client_id, secret = made["client_id"], made["client_secret"]

    def token(secret: str) -> str:
        response = httpx.post(f"{world.origin}/auth/token", auth=(client_id, secret), data={
            "grant_type": "client_credentials", "scope": "system/Patient.rs"})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    before = token(secret)
    for _ in range(4):  # both workers have verified (and cached) it
        assert world.server.client.get("Patient/pa", headers=bearer(before)).status_code == 200
    rotated = cli_json("auth", "client", "rotate", "--db", world.db_url, "--client-id",
                       client_id, "--secret")
    for _ in range(4):
        _outcome(world.server.client.get("Patient/pa", headers=bearer(before)), 401)
    after = token(rotated["client_secret"])
    assert world.server.client.get("Patient/pa", headers=bearer(after)).status_code == 200
    old_secret = httpx.post(f"{world.origin}/auth/token", auth=(client_id, secret), data={
        "grant_type": "client_credentials", "scope": "system/Patient.rs"})
    _oauth_error(old_secret, 401, "invalid_client")


def test_a_replayed_refresh_token_revokes_its_whole_family(world: World) -> None:
    first = user_token(world.server.base, world.app, "alice", PASSWORD, APP_SCOPES)

    def refresh(refresh_token: str) -> httpx.Response:
        return httpx.post(f"{world.origin}/auth/token", data={
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": world.app})

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    issued = [first["access_token"], second.json()["access_token"]]
    for token in issued:
        assert world.server.client.get("Patient/pa", headers=bearer(token)).status_code == 200
    _oauth_error(refresh(first["refresh_token"]), 400, "invalid_grant")  # the replay
    for token in issued:
        _outcome(world.server.client.get("Patient/pa", headers=bearer(token)), 401)
    _oauth_error(refresh(second.json()["refresh_token"]), 400, "invalid_grant")
    # another sign-in starts a family of its own, untouched
    fresh = user_token(world.server.base, world.app, "alice", PASSWORD, APP_SCOPES)
    assert world.server.client.get("Patient/pa", headers=bearer(fresh["access_token"])
                                   ).status_code == 200


# ------------------------------------------------------------ jku and JWKS URLs


def test_a_client_registered_by_jwks_url_gets_tokens_keys_cached(world: World) -> None:
    fetched = world.keys.fetches.get("/jwks.json", 0)
    for _ in range(3):
        response = _backend(world, world.by_url, world.url_key, "system/Patient.read")
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "system/Patient.read"
    assert world.keys.fetches.get("/jwks.json", 0) - fetched <= 2  # once per worker
    with_jku = _backend(world, world.by_url, world.url_key, "system/Patient.rs",
                        jku=world.keys.url("/jwks.json"))
    assert with_jku.status_code == 200, with_jku.text


def test_a_jku_other_than_the_registered_url_is_refused(world: World) -> None:
    elsewhere = world.keys.url("/attacker.json")
    for client_id, key in ((world.by_url, world.url_key), (world.wild, world.key)):
        refused = _backend(world, client_id, key, "system/Patient.rs", jku=elsewhere)
        assert "jku" in _oauth_error(refused, 401, "invalid_client")
    assert "/attacker.json" not in world.keys.fetches


def test_a_jwks_url_on_a_private_address_is_not_fetched(world: World) -> None:
    refused = _backend(world, world.private_url, world.url_key, "system/Patient.rs")
    assert "127.0.0.2" in _oauth_error(refused, 401, "invalid_client")


# ------------------------------------------------------------ the bulk manifest


def test_the_export_manifest_says_downloads_need_the_token(world: World) -> None:
    token = _backend(world, world.wild, world.key, "system/*.read").json()["access_token"]
    client = world.server.client
    kick = client.get("Patient/$export", headers={**bearer(token),
                                                  "Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    status = kick.headers["content-location"]
    deadline = time.monotonic() + 60
    while True:
        polled = client.get(status, headers=bearer(token))
        if polled.status_code != 202 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert polled.status_code == 200, polled.text
    manifest = polled.json()
    assert manifest["requiresAccessToken"] is True and manifest["output"]
    url = manifest["output"][0]["url"]
    assert httpx.get(url, headers=bearer(token)).status_code == 200
    _outcome(httpx.get(url), 401)
