"""``hygeia auth client list|disable|enable|delete``, ``auth user list|disable|enable``, the
Patient check of ``auth user create`` and the secret key check, through the real CLI and a
real server on both databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import database_url  # noqa: F401 - the fixture, on both databases
from tests.api.smart import (
    REDIRECT,
    BackendKey,
    backend_token,
    bearer,
    cli_json,
    hygeia,
    origin_of,
    user_token,
)
from tests.cli.test_errors import single_error_line
from tests.conftest import ServerProcess

PASSWORD = "a long enough passphrase"


def _client(url: str, key: BackendKey, name: str = "Nightly") -> str:
    made = cli_json("auth", "client", "create", "--db", url, "--name", name,
                    "--scopes", "system/*.rs", "--jwks-file", str(key.jwks_file))
    client_id: str = made["client_id"]
    return client_id


def test_a_disabled_or_deleted_client_gets_no_tokens(database_url: str,  # noqa: F811
                                                     tmp_path: Path) -> None:
    key = BackendKey(tmp_path)
    client_id = _client(database_url, key)
    other = _client(database_url, key, "Other")
    listed = cli_json("auth", "client", "list", "--db", database_url)["clients"]
    assert [(c["client_id"], c["name"], c["active"]) for c in listed] == [
        (client_id, "Nightly", True), (other, "Other", True)]
    assert all("secret" not in str(c) and "jwks" not in c for c in listed)
    server = ServerProcess(database_url, "--auth", "--secret-key-file",
                           str(tmp_path / "secret.key"))
    try:
        before = backend_token(server.base, client_id, key, "system/*.rs")
        assert before.status_code == 200, before.text
        token = bearer(before.json()["access_token"])
        assert server.client.get("Patient", headers=token).status_code == 200

        disabled = cli_json("auth", "client", "disable", "--db", database_url,
                            "--client-id", client_id)
        assert disabled["active"] is False
        assert backend_token(server.base, client_id, key, "system/*.rs").status_code == 401
        assert server.client.get("Patient", headers=token).status_code == 401  # revoked
        listed = cli_json("auth", "client", "list", "--db", database_url)["clients"]
        assert [c["active"] for c in listed] == [False, True]

        cli_json("auth", "client", "enable", "--db", database_url, "--client-id", client_id)
        assert backend_token(server.base, client_id, key, "system/*.rs").status_code == 200

        cli_json("auth", "client", "delete", "--db", database_url, "--client-id", client_id)
        assert backend_token(server.base, client_id, key, "system/*.rs").status_code == 401
        assert [c["client_id"] for c in cli_json("auth", "client", "list", "--db",
                                                 database_url)["clients"]] == [other]
        assert backend_token(server.base, other, key, "system/*.rs").status_code == 200
    finally:
        server.stop()
    gone = hygeia("auth", "client", "disable", "--db", database_url, "--client-id", client_id)
    assert gone.returncode == 1 and gone.stderr.startswith("error: There is no client")


def test_users_are_listed_disabled_and_linked_only_to_stored_patients(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/users.db"
    refused = hygeia("auth", "user", "create", "--db", url, "--username", "alice",
                     "--password-stdin", "--patient", "nobody", stdin=PASSWORD)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "There is no Patient 'nobody'" in lines[0], lines
    assert cli_json("auth", "user", "list", "--db", url) == {"users": []}

    patient = tmp_path / "alice.json"
    patient.write_text('{"resourceType": "Patient", "id": "alice-1"}')
    assert hygeia("load", "--quiet", "--db", url, str(patient)).returncode == 0
    cli_json("auth", "user", "create", "--db", url, "--username", "alice",
             "--password-stdin", "--patient", "alice-1", stdin=PASSWORD)
    users = cli_json("auth", "user", "list", "--db", url)["users"]
    assert [(u["username"], u["fhirUser"], u["active"]) for u in users] == [
        ("alice", "Patient/alice-1", True)]
    assert "password" not in str(users)
    app = cli_json("auth", "client", "create", "--db", url, "--name", "Chart", "--scopes",
                   "patient/*.rs offline_access", "--redirect-uri", REDIRECT)["client_id"]
    server = ServerProcess(url, "--auth", "--secret-key-file", str(tmp_path / "secret.key"))
    try:
        signed_in = user_token(server.base, app, "alice", PASSWORD, "patient/*.rs offline_access")
        cli_json("auth", "user", "disable", "--db", url, "--username", "alice")
        assert cli_json("auth", "user", "list", "--db", url)["users"][0]["active"] is False
        refreshed = httpx.post(f"{origin_of(server.base)}/auth/token", data={
            "grant_type": "refresh_token", "refresh_token": signed_in["refresh_token"],
            "client_id": app})
        assert refreshed.status_code == 400 and "disabled" in refreshed.text, refreshed.text
        with pytest.raises(AssertionError):  # the sign-in page no longer lets alice in
            user_token(server.base, app, "alice", PASSWORD, "patient/*.rs offline_access")
        cli_json("auth", "user", "enable", "--db", url, "--username", "alice")
        user_token(server.base, app, "alice", PASSWORD, "patient/*.rs offline_access")
    finally:
        server.stop()


def test_a_secret_key_that_does_not_open_the_signing_keys_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/keys.db"
    first = tmp_path / "first.key"
    cli_json("auth", "key", "rotate", "--db", url, "--secret-key-file", str(first))
    wrong = tmp_path / "wrong.key"
    single_error_line(hygeia("serve", "--auth", "--db", url, "--port", "0",
                             "--secret-key-file", str(wrong)),
                      "does not open the token signing keys", "--secret-key-file",
                      "--replace-lost-secret-key")
    rotated = hygeia("auth", "key", "rotate", "--db", url, "--secret-key-file", str(wrong))
    assert rotated.returncode == 1 and "does not open" in rotated.stderr
    # the right key still serves; a lost key is replaced only when asked
    server = ServerProcess(url, "--auth", "--secret-key-file", str(first))
    try:
        assert httpx.get(server.base.removesuffix("/fhir") + "/auth/jwks").status_code == 200
    finally:
        server.stop()
    cli_json("auth", "key", "rotate", "--db", url, "--secret-key-file", str(wrong),
             "--replace-lost-secret-key")
    server = ServerProcess(url, "--auth", "--secret-key-file", str(wrong))
    server.stop()


@pytest.mark.parametrize("action", [("client", "list"), ("user", "list")])
def test_listing_an_empty_database(tmp_path: Path, action: tuple[str, str]) -> None:
    listed = cli_json("auth", *action, "--db", f"sqlite:///{tmp_path}/empty.db")
    assert listed == {f"{action[0]}s": []}


def test_serve_with_auth_makes_the_signing_key_before_serving(tmp_path: Path) -> None:
    """Made once at start, the first token requests of several workers do not race to
    make the first key (each would retire the others')."""
    url = f"sqlite:///{tmp_path}/keys.db"
    server = ServerProcess(url, "--auth", "--workers", "2",
                           "--secret-key-file", str(tmp_path / "secret.key"))
    try:
        with sqlite3.connect(tmp_path / "keys.db") as connection:
            keys = connection.execute("SELECT count(*) FROM auth_key WHERE retired IS NULL")
            assert keys.fetchone() == (1,)
    finally:
        server.stop()
