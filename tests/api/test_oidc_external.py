"""An external OpenID Connect provider issues the tokens; Hygeia checks them by its JWKS.

The provider here is a small HTTP server publishing a discovery document and a
key set (the part of a provider Hygeia talks to); the tokens are signed with
its private key as Keycloak or Entra ID would sign them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.api.smart import bearer
from tests.conftest import ServerProcess


class Provider:
    """Publishes ``/.well-known/openid-configuration`` and ``/keys``; signs tokens."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        public.update(kid="idp-1", alg="RS256", use="sig")
        documents: dict[str, Any] = {"/keys": {"keys": [public]}}
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(documents))
        self.issuer = f"http://127.0.0.1:{self.http.server_address[1]}/realms/hospital"
        documents["/realms/hospital/.well-known/openid-configuration"] = {
            "issuer": self.issuer, "jwks_uri": f"http://127.0.0.1:{self.http.server_address[1]}"
            "/keys", "authorization_endpoint": f"{self.issuer}/protocol/auth",
            "token_endpoint": f"{self.issuer}/protocol/token"}
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def token(self, audience: str, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "sub": "u-1", "aud": audience, "iat": now,
                "exp": now + 300, "azp": "portal", **claims}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": "idp-1"})


def _handler(documents: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            document = documents.get(self.path)
            payload = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return None

    return Handler


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    made = Provider()
    yield made
    made.http.shutdown()


@pytest.fixture(scope="module")
def server(provider: Provider, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("oidc")
    process = ServerProcess(f"sqlite:///{folder}/oidc.db", "--oidc-issuer", provider.issuer)
    admin = provider.token(process.base, scope="system/*.cruds")
    for pid in ("a", "b"):
        made = process.client.put(f"Patient/{pid}", headers=bearer(admin),
                                  json={"resourceType": "Patient", "id": pid})
        assert made.status_code == 201, made.text
    yield process
    process.stop()


def test_the_providers_tokens_carry_their_scopes(provider: Provider,
                                                 server: ServerProcess) -> None:
    token = provider.token(server.base, scope="patient/*.rs openid", patient="a",
                           fhirUser="Patient/a")
    assert server.client.get("Patient/a", headers=bearer(token)).status_code == 200
    assert server.client.get("Patient/b", headers=bearer(token)).status_code == 404
    listed = server.client.get("Patient", headers=bearer(token)).json()
    assert [e["resource"]["id"] for e in listed["entry"]] == ["a"]
    as_list = provider.token(server.base, scp=["user/Patient.rs"])  # Entra-style claim
    assert server.client.get("Patient/b", headers=bearer(as_list)).status_code == 200


@pytest.mark.parametrize("problem", ["issuer", "audience", "expired", "key"])
def test_foreign_or_stale_tokens_are_refused(provider: Provider, server: ServerProcess,
                                             problem: str) -> None:
    claims: dict[str, Any] = {"scope": "system/*.rs"}
    audience, key = server.base, None
    if problem == "issuer":
        claims["iss"] = "http://127.0.0.1:1/realms/other"
    elif problem == "audience":
        audience = "http://127.0.0.1:1/fhir"
    elif problem == "expired":
        claims.update(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = server.client.get("Patient", headers=bearer(provider.token(audience, key,
                                                                          **claims)))
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


def test_discovery_points_at_the_provider(provider: Provider, server: ServerProcess) -> None:
    config = server.client.get(".well-known/smart-configuration").json()
    assert config["token_endpoint"] == f"{provider.issuer}/protocol/token"
    assert config["authorization_endpoint"] == f"{provider.issuer}/protocol/auth"
    origin = server.base.removesuffix("/fhir")
    assert httpx.get(f"{origin}/auth/token").status_code == 404  # Hygeia issues none
    security = server.client.get("metadata").json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == f"{provider.issuer}/protocol/token"
