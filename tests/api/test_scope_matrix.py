"""The scope matrix: every kind of token against every interaction, on two patients' data.

Tokens: patient A and patient B (standalone launch, signed in on the real
authorization page), a practitioner (``user/*.cruds``), a backend service
(``system/*.rs``), an auditor (``system/AuditEvent.rs``: the audit trail and
nothing else), and four that must get nothing: none, expired, issued for
another server (wrong audience), and a patient token whose payload was
altered (tampered signature).  Interactions: reads, searches (chained,
``_has``, ``_include``/``_revinclude``, compartment, multi-type),
``$everything``, history, writes, a transaction and ``$export``.

Each cell asserts the exact status and whether the response revealed the
owner's resource.  The data is built so that includes would leak: patient
A's Observation names patient B in ``focus`` (not a compartment link), and
the other way round.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hygeia.server.auth.secrets import SecretBox
from hygeia.server.auth.signing import Signer
from hygeia.store import open_repository
from hygeia.store.auth import AuthStore
from tests.api.smart import REDIRECT, BackendKey, backend_token, bearer, cli_json, user_token
from tests.conftest import BACKENDS, ServerProcess, _drop_database

PASSWORD = "correct horse battery"
FAMILY = {"pa": "Alpha", "pb": "Beta"}
OTHER = {"pa": "pb", "pb": "pa"}
PATIENT_SCOPES = "launch/patient openid fhirUser patient/*.rs patient/Observation.cu"


@dataclass
class World:
    server: ServerProcess
    tokens: dict[str, str | None]
    admin: dict[str, str]

    def call(self, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**bearer(self.tokens[token]), **kwargs.pop("headers", {})}
        return self.server.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("smart")
    if request.param == "sqlite":
        url = f"sqlite:///{folder}/smart.db"
    else:
        url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + \
            f"/hygeia_smart_{uuid.uuid4().hex[:8]}"
    key = BackendKey(folder)
    clients = {name: cli_json("auth", "client", "create", "--db", url, "--name", name,
                              "--scopes", scopes, "--jwks-file", str(key.jwks_file))["client_id"]
               for name, scopes in (("admin", "system/*.cruds"), ("backend", "system/*.rs"),
                                    ("auditor", "system/AuditEvent.rs"))}
    app = cli_json("auth", "client", "create", "--db", url, "--name", "Chart", "--scopes",
                   f"{PATIENT_SCOPES} user/*.cruds offline_access",
                   "--redirect-uri", REDIRECT)["client_id"]
    secret_key = folder / "secret.key"
    server = ServerProcess(url, "--auth", "--secret-key-file", str(secret_key),
                           "--files", str(folder / "files"))
    try:
        admin = backend_token(server.base, clients["admin"], key, "system/*.cruds").json()
        _load_data(server, bearer(admin["access_token"]))
        # a user linked to a Patient is created once that Patient exists
        for username, link in (("alice", ("--patient", "pa")), ("bob", ("--patient", "pb")),
                               ("drlee", ("--practitioner", "pr"))):
            cli_json("auth", "user", "create", "--db", url, "--username", username,
                     "--password-stdin", *link, stdin=PASSWORD + "\n")
        tokens = _tokens(server, url, secret_key, app, clients["backend"], key)
        tokens["auditor"] = backend_token(server.base, clients["auditor"], key,
                                          "system/AuditEvent.rs").json()["access_token"]
        yield World(server, tokens, bearer(admin["access_token"]))
    finally:
        server.stop()
        if request.param != "sqlite":
            _drop_database(url)


def _load_data(server: ServerProcess, admin: dict[str, str]) -> None:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Lee"}]}]
    for pid in ("pa", "pb"):
        resources += [
            {"resourceType": "Patient", "id": pid, "name": [{"family": FAMILY[pid]}]},
            {"resourceType": "Observation", "id": f"{pid}-obs", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
             "subject": {"reference": f"Patient/{pid}"},
             "performer": [{"reference": "Practitioner/pr"}],
             "focus": [{"reference": f"Patient/{OTHER[pid]}"}]},
            {"resourceType": "Encounter", "id": f"{pid}-enc", "status": "finished",
             "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{pid}"}}]
    for resource in resources:
        response = server.client.put(f"{resource['resourceType']}/{resource['id']}",
                                     json=resource, headers=admin)
        assert response.status_code == 201, response.text


def _tokens(server: ServerProcess, url: str, secret_key: Path, app: str, backend: str,
            key: BackendKey) -> dict[str, str | None]:
    alice = user_token(server.base, app, "alice", PASSWORD, PATIENT_SCOPES)
    assert alice["patient"] == "pa"
    bob = user_token(server.base, app, "bob", PASSWORD, PATIENT_SCOPES)
    doctor = user_token(server.base, app, "drlee", PASSWORD, "openid fhirUser user/*.cruds")
    system = backend_token(server.base, backend, key, "system/*.rs").json()["access_token"]
    with open_repository(url) as repository:
        signer = Signer(AuthStore(repository), SecretBox.from_file(secret_key))
        claims = _payload(alice["access_token"])
        now = int(time.time())
        expired = signer.sign({**claims, "iat": now - 7200, "exp": now - 3600})
        elsewhere = signer.sign({**claims, "aud": "http://127.0.0.1:1/fhir"})
    return {"patient-a": alice["access_token"], "patient-b": bob["access_token"],
            "practitioner": doctor["access_token"], "system": system, "none": None,
            "expired": expired, "wrong-audience": elsewhere,
            "tampered": _tampered(alice["access_token"])}


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return loaded


def _tampered(token: str) -> str:
    """The same token claiming patient B, with A's signature kept."""
    header, _, signature = token.split(".")
    payload = {**_payload(token), "patient": "pb"}
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


# ---------------------------------------------------------------- the interactions

Outcome = tuple[int, bool | None]  # status, and whether the owner's resource was revealed
Cell = Callable[[World, str, str], Outcome]


def _ids(response: httpx.Response) -> set[str]:
    if response.status_code != 200:
        return set()
    body = response.json()
    if body.get("resourceType") != "Bundle":
        return {f"{body['resourceType']}/{body['id']}"}
    return {f"{e['resource']['resourceType']}/{e['resource'].get('id')}"
            for e in body.get("entry", []) if "resource" in e}


def _reveals(response: httpx.Response, wanted: str) -> Outcome:
    return response.status_code, wanted in _ids(response)


def _get(path: str, wanted: str) -> Cell:
    def cell(world: World, token: str, pid: str) -> Outcome:
        response = world.call(token, "GET", path.format(pid=pid, other=OTHER[pid],
                                                        family=FAMILY[pid]))
        return _reveals(response, wanted.format(pid=pid, other=OTHER[pid]))
    return cell


def _observation(pid: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
            "subject": {"reference": f"Patient/{pid}"}}


def _create(world: World, token: str, pid: str) -> Outcome:
    return world.call(token, "POST", "Observation", json=_observation(pid)).status_code, None


def _update(world: World, token: str, pid: str) -> Outcome:
    """Adds a note, keeping the references the other cells rely on."""
    body = world.server.client.get(f"Observation/{pid}-obs", headers=world.admin).json()
    body["note"] = [{"text": f"by {token}"}]
    return world.call(token, "PUT", f"Observation/{pid}-obs", json=body).status_code, None


def _delete(world: World, token: str, pid: str) -> Outcome:
    target = f"Encounter/{pid}-{uuid.uuid4().hex[:8]}"
    made = world.server.client.put(target, headers=world.admin, json={
        "resourceType": "Encounter", "id": target.split("/")[1], "status": "finished",
        "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{pid}"}})
    assert made.status_code == 201
    return world.call(token, "DELETE", target).status_code, None


def _transaction(world: World, token: str, pid: str) -> Outcome:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}}]}
    return world.call(token, "POST", "", json=bundle).status_code, None


def _export(world: World, token: str, pid: str) -> Outcome:
    response = world.call(token, "GET", "$export", headers={"Prefer": "respond-async"})
    if response.status_code == 202:  # not left running: cancel and clean up
        world.call(token, "DELETE", response.headers["content-location"])
    return response.status_code, None


def _search_audit(world: World, token: str, pid: str) -> Outcome:
    """The trail of who touched the patient's record (every earlier cell left some)."""
    response = world.call(token, "GET", f"AuditEvent?patient=Patient/{pid}&_count=5")
    return response.status_code, bool(_ids(response))


def _write_audit(world: World, token: str, pid: str) -> Outcome:
    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded":
             "2026-01-01T00:00:00Z", "agent": [{"requestor": True}], "source": {
                 "observer": {"display": "x"}}}
    return world.call(token, "POST", "AuditEvent", json=event).status_code, None


CELLS: dict[str, Cell] = {
    "read Patient": _get("Patient/{pid}", "Patient/{pid}"),
    "read Observation": _get("Observation/{pid}-obs", "Observation/{pid}-obs"),
    "vread": _get("Observation/{pid}-obs/_history/1", "Observation/{pid}-obs"),
    "history instance": _get("Observation/{pid}-obs/_history", "Observation/{pid}-obs"),
    "search by patient": _get("Observation?patient={pid}", "Observation/{pid}-obs"),
    "search all": _get("Observation?code=1234-5", "Observation/{pid}-obs"),
    "compartment search": _get("Patient/{pid}/Observation", "Observation/{pid}-obs"),
    "$everything": _get("Patient/{pid}/$everything", "Observation/{pid}-obs"),
    "chained": _get("Observation?subject:Patient.family={family}", "Observation/{pid}-obs"),
    "_has on Patient": _get("Patient?_has:Observation:subject:code=1234-5&_id={pid}",
                            "Patient/{pid}"),
    "_has from Practitioner": _get("Practitioner?_has:Observation:performer:subject="
                                   "Patient/{pid}", "Practitioner/pr"),
    # the focus of one patient's Observation is the other patient: never included
    "_include leak": _get("Observation?_id={other}-obs&_include=Observation:focus",
                          "Patient/{pid}"),
    "_revinclude leak": _get("Patient?_id={other}&_revinclude=Observation:focus",
                             "Observation/{pid}-obs"),
    "multi-type search": _get("?_type=Observation,Encounter&patient={pid}",
                              "Encounter/{pid}-enc"),
    "type history": _get("Observation/_history", "Observation/{pid}-obs"),
    "create": _create,
    "update": _update,
    "delete": _delete,
    "transaction": _transaction,
    "$export": _export,
    "write AuditEvent": _write_audit,
    "search AuditEvent": _search_audit,
}

REFUSED_TOKENS = ("none", "expired", "wrong-audience", "tampered")
PATIENT_OF = {"patient-a": "pa", "patient-b": "pb"}


def expected(token: str, cell: str, pid: str) -> Outcome:
    """The one right answer for each cell (see the module docstring)."""
    if token in REFUSED_TOKENS:
        return 401, False if cell not in _WRITES else None
    if cell == "write AuditEvent":  # no token may: the server alone writes the trail
        return 405, None
    if token == "auditor":
        return _auditor_expectation(cell)
    if cell == "search AuditEvent":  # wildcards never reach the trail
        return 403, False
    if token in PATIENT_OF:
        return _patient_expectation(cell, pid == PATIENT_OF[token])
    writer = token == "practitioner"
    if cell in _WRITES:
        status = {"create": 201, "update": 200, "delete": 204, "transaction": 200,
                  "$export": 202}[cell]
        return (status if writer or cell == "$export" else 403), None
    return 200, True


def _auditor_expectation(cell: str) -> Outcome:
    if cell == "search AuditEvent":
        return 200, True
    if cell == "$export":  # of the one type it may read whole: the trail
        return 202, None
    return 403, (None if cell in _WRITES else False)


_WRITES = {"create", "update", "delete", "transaction", "$export", "write AuditEvent"}
_HIDDEN_BY_404 = {"read Patient", "read Observation", "vread", "history instance",
                  "$everything"}


def _patient_expectation(cell: str, own: bool) -> Outcome:
    if cell in ("_has from Practitioner", "type history"):
        return 403, False
    if cell in ("_include leak", "_revinclude leak"):
        return 200, False
    if cell in ("create", "update", "transaction"):
        return ({"create": 201, "update": 200, "transaction": 200}[cell] if own else 403), None
    if cell in ("delete", "$export"):
        return 403, None
    if own:
        return 200, True
    return (404 if cell in _HIDDEN_BY_404 else 200), False


TOKENS = ("patient-a", "patient-b", "practitioner", "system", "auditor", *REFUSED_TOKENS)


@pytest.mark.parametrize("token", TOKENS)
def test_scope_matrix(world: World, token: str) -> None:
    """Every cell of one token's row, both patients: the whole row is reported at once."""
    wrong = []
    for name, cell in CELLS.items():
        for pid in ("pa", "pb"):
            got = cell(world, token, pid)
            want = expected(token, name, pid)
            if got != want:
                wrong.append(f"{name} on {pid}: got {got}, want {want}")
    assert not wrong, "\n".join(wrong)

