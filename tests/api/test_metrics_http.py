"""``/metrics`` through a real ``hygeia serve``: Prometheus text that counts requests by
interaction and status, latency histograms and the job queue; open without --auth,
403 with it unless --public-metrics; one sum over all --workers in multiprocess mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess
from tests.helpers import patient, unique

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _scrape(server: ServerProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample values by sample name and sorted labels, from a new connection."""
    response = httpx.get(server.base.removesuffix("/fhir") + "/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        samples.setdefault(family.name, {})
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def _requests(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], interaction: str,
              status: str) -> float:
    return samples["hygeia_http_requests_total"].get(
        (("interaction", interaction), ("status", status)), 0.0)


def test_requests_are_counted_by_interaction_and_status(server: ServerProcess) -> None:
    client = server.client
    before = _scrape(server)
    created = client.post("Patient", content=orjson.dumps(patient(unique())), headers=FHIR_JSON)
    assert created.status_code == 201
    for _ in range(3):
        assert client.get(f"Patient/{created.json()['id']}").status_code == 200
    assert client.get("Patient", params={"identifier": unique()}).status_code == 200
    assert client.get(f"Patient/{unique()}").status_code == 404
    after = _scrape(server)
    for interaction, status, added in (("create", "201", 1), ("read", "200", 3),
                                       ("search-type", "200", 1), ("read", "404", 1)):
        assert _requests(after, interaction, status) - \
            _requests(before, interaction, status) == added, (interaction, status)
    # the scrape before this one was counted too, outside /fhir
    assert _requests(after, "metrics", "200") >= 1
    latency = after["hygeia_http_request_duration_seconds_count"]
    assert latency[(("interaction", "read"),)] >= 4
    buckets = after["hygeia_http_request_duration_seconds_bucket"]
    assert buckets[(("interaction", "read"), ("le", "+Inf"))] == latency[(("interaction", "read"),)]
    assert "hygeia_jobs" in after  # the queue depth family, empty while nothing waits
    pool = after["hygeia_db_pool_connections"]
    assert pool[(("state", "in_use"),)] >= 0 and pool[(("state", "idle"),)] >= 0
    assert pool[(("state", "in_use"),)] + pool[(("state", "idle"),)] >= 1
    assert after["hygeia_db_pool_waiting"][()] >= 0


def test_a_waiting_job_shows_in_the_queue_depth(database_url: str) -> None:
    server = ServerProcess(database_url)
    try:
        assert _scrape(server)["hygeia_jobs"] == {}  # the family is there, empty
        # a kind this server does not run (a newer Hygeia's) stays queued for it to see
        _insert_queued_job(database_url, "future-kind")
        assert _scrape(server)["hygeia_jobs"] == {
            (("kind", "future-kind"), ("state", "queued")): 1.0}
    finally:
        server.stop()


def _insert_queued_job(url: str, kind: str) -> None:
    row = (unique(), kind, "queued", "{}", 0, 1, 1)
    sql = ("INSERT INTO job (id, kind, state, request, attempts, created, updated) "
           "VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0})")
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute(sql.format("?"), row)
        return
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.format("%s"), row)


@pytest.mark.parametrize("public", [False, True])
def test_metrics_under_auth_are_closed_unless_public(database_url: str, public: bool) -> None:
    flags = ("--auth", "--public-metrics") if public else ("--auth",)
    server = ServerProcess(database_url, *flags)
    try:
        response = httpx.get(server.base.removesuffix("/fhir") + "/metrics")
        if public:
            assert response.status_code == 200
            assert "hygeia_http_requests_total" in response.text
        else:
            assert response.status_code == 403
            assert response.json()["resourceType"] == "OperationOutcome"
            assert "--public-metrics" in response.json()["issue"][0]["diagnostics"]
    finally:
        server.stop()


@pytest.mark.parametrize("own_folder", [True, False], ids=["operator-folder", "automatic"])
def test_workers_are_summed_in_multiprocess_mode(tmp_path: Path, own_folder: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With the operator's PROMETHEUS_MULTIPROC_DIR, or without one (``hygeia serve``
    then makes a folder of its own for its workers)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    if own_folder:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    else:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = ServerProcess(f"sqlite:///{tmp_path}/w.db", "--workers", "2")
    try:
        first = _requests(_scrape(server), "capabilities", "200")
        for _ in range(20):  # new connections, so both workers answer some
            assert httpx.get(f"{server.base}/metadata").status_code == 200
        # whichever worker answers a scrape, it reports both workers' requests
        seen = {_requests(_scrape(server), "capabilities", "200") for _ in range(6)}
        assert seen == {first + 20}
        if own_folder:
            assert len(list(folder.iterdir())) >= 2  # one file per worker and metric type
    finally:
        server.stop()
