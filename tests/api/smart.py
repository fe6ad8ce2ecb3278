"""What a SMART client does, written out for tests: register, sign in, get tokens.

The CLI registers clients and users (it is the documented way); tokens come
from the real endpoints of a running server, through real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "http://127.0.0.1:9/callback"


def hygeia(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def cli_json(*args: str, stdin: str | None = None) -> dict[str, Any]:
    result = hygeia(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


class BackendKey:
    """A backend service's key pair; ``jwks_file`` holds the public half for registration."""

    def __init__(self, folder: Path, algorithm: str = "ES384") -> None:
        self.algorithm = algorithm
        self.kid = uuid.uuid4().hex[:8]
        if algorithm == "ES384":
            self.private: Any = ec.generate_private_key(ec.SECP384R1())
            public = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        public.update(kid=self.kid, alg=algorithm)
        self.jwks_file = folder / f"jwks-{self.kid}.json"
        self.jwks_file.write_text(json.dumps({"keys": [public]}))

    def assertion(self, client_id: str, token_url: str, **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
                  "jti": uuid.uuid4().hex, **changes}
        return jwt.encode(claims, self.private, algorithm=self.algorithm,
                          headers={"kid": self.kid})


def origin_of(base: str) -> str:
    return base.removesuffix("/fhir")


def backend_token(base: str, client_id: str, key: BackendKey, scope: str) -> httpx.Response:
    token_url = f"{origin_of(base)}/auth/token"
    return httpx.post(token_url, data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": key.assertion(client_id, token_url)})


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorization_code(base: str, client_id: str, username: str, password: str, scope: str,
                       *, patient: str | None = None, launch: str | None = None,
                       verifier_challenge: tuple[str, str] | None = None
                       ) -> tuple[str, str]:
    """Sign in on the authorization page as a browser would: returns (code, verifier)."""
    verifier, challenge = verifier_challenge or pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": scope, "state": "s-123", "aud": base, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    if launch:
        params["launch"] = launch
    page = httpx.get(f"{origin_of(base)}/auth/authorize", params=params)
    assert page.status_code == 200, page.text
    form = {**params, "username": username, "password": password, "decision": "allow"}
    if patient:
        form["patient"] = patient
    answer = httpx.post(f"{origin_of(base)}/auth/authorize", data=form)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["s-123"]
    return query["code"][0], verifier


def user_token(base: str, client_id: str, username: str, password: str, scope: str,
               **options: Any) -> dict[str, Any]:
    code, verifier = authorization_code(base, client_id, username, password, scope, **options)
    response = httpx.post(f"{origin_of(base)}/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": client_id, "code_verifier": verifier})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}
