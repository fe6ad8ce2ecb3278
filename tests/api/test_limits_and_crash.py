"""Body limits and crash safety, each with a server process of its own."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import orjson
import psycopg

from tests.conftest import ServerProcess, postgres_admin_url
from tests.helpers import patient, synthea_bundle

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def test_body_over_limit_is_413(database_url: str) -> None:
    server = ServerProcess(database_url, "--max-body-mb", "0.001")
    try:
        big = patient(text={"status": "generated", "div": "<div>" + "x" * 5000 + "</div>"})
        response = server.client.post("Patient", content=orjson.dumps(big), headers=FHIR_JSON)
        assert response.status_code == 413
        assert response.json()["resourceType"] == "OperationOutcome"
    finally:
        server.stop()


def amplified_bundle(copies: int) -> tuple[dict, int]:
    """Copies of a Synthea bundle with fresh urn:uuids, as one big transaction."""
    source = orjson.dumps(synthea_bundle("001")["entry"]).decode()
    entries = []
    for _ in range(copies):
        text = URN.sub(_renamer(), source)
        entries.extend(orjson.loads(text))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, len(entries)


URN = re.compile(r"urn:uuid:[0-9a-f-]{36}")


def _renamer() -> Callable[[re.Match[str]], str]:
    fresh: dict[str, str] = {}
    return lambda match: fresh.setdefault(match.group(0), f"urn:uuid:{uuid.uuid4()}")


def write_transaction_open(database_url: str) -> bool:
    """True while some connection holds an open write transaction on the database."""
    if database_url.startswith("sqlite:///"):
        probe = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()").fetchone()
        return bool(row and row[0])


def count_stored(server: ServerProcess) -> int:
    return sum(server.client.get(kind, params={"_count": "0"}).json()["total"]
               for kind in ("Patient", "Observation", "Encounter", "Claim"))


def test_kill_9_mid_transaction_leaves_nothing_partial(database_url: str) -> None:
    bundle, size = amplified_bundle(20)
    body = orjson.dumps(bundle)
    server = ServerProcess(database_url, "--max-body-mb", "256")
    posted = threading.Thread(target=_post_ignoring_errors, args=(server.base, body))
    posted.start()
    deadline = time.monotonic() + 60
    while not write_transaction_open(database_url):
        assert time.monotonic() < deadline, "the transaction never started"
        time.sleep(0.002)
    server.kill()  # kill -9 while the transaction is open
    posted.join(30)
    restarted = ServerProcess(database_url)
    try:
        assert size > 5000
        assert count_stored(restarted) == 0, "a killed transaction left partial data"
        retry = restarted.client.post("", content=body, headers=FHIR_JSON)
        assert retry.status_code == 200
        assert count_stored(restarted) == 20 * sum(
            1 for e in bundle["entry"][:273]
            if e["resource"]["resourceType"] in ("Patient", "Observation", "Encounter", "Claim"))
    finally:
        restarted.stop()


def _post_ignoring_errors(base: str, body: bytes) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(base + "/", content=body, headers=FHIR_JSON, timeout=60)


def test_postgres_env_is_honoured() -> None:
    """Guard: the variable CI sets is the one the fixtures read."""
    import os

    assert postgres_admin_url() == (os.environ.get("HYGEIA_TEST_POSTGRES") or None)
