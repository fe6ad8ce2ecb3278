"""The EHR's JWT on CDS Hooks calls: verified against the issuer's registered keys, on
SQLite and PostgreSQL; and ``hygeia cds client add|list``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hygeia.clinical.cds.auth import registered_client
from hygeia.clinical.cds.mount import CdsMount
from hygeia.clinical.cds.services import built_in
from hygeia.fhir.outcome import FhirError
from hygeia.server import FhirService
from hygeia.server.extensions import MountRequest, MountResponse
from hygeia.store import AuthStore

ISSUER = "https://ehr.example.org"
AUDIENCE = "http://test/cds-services/news2"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def public_jwks(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": "ehr-1", "alg": "ES384", "use": "sig"}]}


def signed(key: ec.EllipticCurvePrivateKey, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "ehr-client", "aud": AUDIENCE, "iat": now,
              "exp": now + 300, "jti": str(uuid.uuid4()), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "ehr-1"})


@pytest.fixture
def mount(service: FhirService, key: ec.EllipticCurvePrivateKey) -> CdsMount:
    AuthStore(service.repository).add_client(registered_client(ISSUER, public_jwks(key), 0))
    return CdsMount(service, built_in(3600))


def send(mount: CdsMount, token: str | None) -> MountResponse:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/x", "patientId": "nobody"}}
    return mount.handle(MountRequest("POST", "/cds-services/news2", [], headers,
                                     json.dumps(body).encode(), "http://test"))


def refusal(mount: CdsMount, token: str | None) -> str:
    with pytest.raises(FhirError) as raised:
        send(mount, token)
    assert raised.value.status == 401
    return str(raised.value)


def test_a_signed_call_verifies_once(mount: CdsMount, key: ec.EllipticCurvePrivateKey) -> None:
    token = signed(key)
    assert send(mount, token).status == 200
    assert "jti was used already" in refusal(mount, token)


@pytest.mark.parametrize(("changes", "words"), [
    ({"aud": "http://test/cds-services/qsofa"}, "does not verify"),
    ({"iss": "https://other.example.org"}, "not a registered CDS client"),
    ({"exp": int(time.time()) - 60}, "does not verify"),
    ({"exp": int(time.time()) + 3600}, "more than 600 seconds"),
    ({"jti": None}, "does not verify"),
])
def test_a_bad_jwt_is_refused(mount: CdsMount, key: ec.EllipticCurvePrivateKey,
                              changes: dict[str, Any], words: str) -> None:
    assert words in refusal(mount, signed(key, **changes))


def test_another_key_or_no_jwt(mount: CdsMount) -> None:
    stranger = ec.generate_private_key(ec.SECP384R1())
    assert "does not verify" in refusal(mount, signed(stranger))
    with pytest.raises(FhirError) as basic:
        mount.handle(MountRequest("POST", "/cds-services/news2", [],
                                  {"authorization": "Basic eDp5"}, b"{}", "http://test"))
    assert "Bearer <JWT>" in str(basic.value)
    assert send(mount, None).status == 200  # an open server answers unsigned calls
    mount.auth.required = True
    assert "requires a CDS Hooks JWT" in refusal(mount, None)


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_client_commands(clinical_pillar: None, tmp_path: Path,
                             key: ec.EllipticCurvePrivateKey) -> None:
    url = f"sqlite:///{tmp_path}/cds.db"
    # laid out by the CLI: it knows every installed pillar's tables (imaging's too)
    migrated = hygeia("db", "migrate", "--db", url)
    assert migrated.returncode == 0, migrated.stderr
    keys = tmp_path / "ehr.jwks"
    keys.write_text(json.dumps(public_jwks(key)))
    added = hygeia("cds", "client", "add", "--issuer", ISSUER, "--jwks-file", str(keys),
                   "--db", url)
    assert (added.returncode, added.stdout) == (0, f"registered CDS client {ISSUER}\n")
    again = hygeia("cds", "client", "add", "--issuer", ISSUER, "--jwks-file", str(keys),
                   "--db", url)
    assert (again.returncode, again.stderr) == \
        (2, f"error: the issuer {ISSUER} is registered already\n")
    listed = hygeia("cds", "client", "list", "--db", url)
    assert listed.stdout == f"{ISSUER}\t1 keys\tactive\n"
    private = tmp_path / "private.jwks"
    private.write_text(json.dumps({"keys": [json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(key))]}))
    refused = hygeia("cds", "client", "add", "--issuer", "x", "--jwks-file", str(private),
                     "--db", url)
    assert refused.returncode == 2 and "private key" in refused.stderr
