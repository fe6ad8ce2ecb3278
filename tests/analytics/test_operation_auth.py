"""With authorization on, ``$viewdefinition-run`` reads a whole type only for a token
that may read that type whole (as bulk export does): a real server with SMART
backend-services tokens."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.analytics.test_operation import VIEW
from tests.api.smart import BackendKey, backend_token, bearer, cli_json
from tests.conftest import ServerProcess

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def test_a_run_needs_a_whole_type_read_scope(tmp_path: Path, analytics_installed: None) -> None:
    database_url = f"sqlite:///{tmp_path}/auth.db"
    key = BackendKey(tmp_path)
    scopes = ("system/Observation.rs", "system/Patient.rs")
    clients = {scope: cli_json("auth", "client", "create", "--db", database_url, "--name",
                               scope, "--scopes", scope, "--jwks-file",
                               str(key.jwks_file))["client_id"] for scope in scopes}
    server = ServerProcess(database_url, "--auth", "--secret-key-file",
                           str(tmp_path / "secret.key"), "--files", str(tmp_path / "files"))
    body = orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": VIEW}]})
    try:
        for scope, status in (("system/Observation.rs", 403), ("system/Patient.rs", 200)):
            token = backend_token(server.base, clients[scope], key, scope).json()
            answer = server.client.post("$viewdefinition-run", content=body,
                                        headers={**FHIR_JSON, **bearer(token["access_token"])})
            assert answer.status_code == status, answer.text
            if status == 403:
                assert answer.json()["issue"][0]["expression"] == ["resource"]
            else:
                assert answer.json() == []
        anonymous = server.client.post("$viewdefinition-run", content=body, headers=FHIR_JSON)
        assert anonymous.status_code == 401
    finally:
        server.stop()
