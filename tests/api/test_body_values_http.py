"""Request bodies are bounded by the JSON values they hold, not only by their bytes:
memory grows with the values (a body of tiny values takes ~25 times its size parsed)."""

from __future__ import annotations

import time

import orjson

from tests.api.test_write_limits_http import memory, outcome, serving_worker
from tests.conftest import ServerProcess
from tests.helpers import patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _tiny_values(count: int) -> bytes:
    """A Basic whose one extension list holds ``count`` small objects (~1.5 values each)."""
    items = b",".join([b'{"url":"x"}'] * count)
    return b'{"resourceType":"Basic","code":{"text":"t"},"extension":[' + items + b"]}"


def test_a_body_of_too_many_values_is_413_before_parsing(database_url: str) -> None:
    server = ServerProcess(database_url, "--max-json-values", "1000")
    try:
        response = server.client.post("Basic", content=_tiny_values(1000), headers=FHIR_JSON)
        outcome(response, 413, "over the limit of 1,000")
        ordinary = server.client.post("Patient", content=orjson.dumps(patient("v")),
                                      headers=FHIR_JSON)
        assert ordinary.status_code == 201
    finally:
        server.stop()


def test_the_largest_body_of_tiny_values_stays_within_300_mb(database_url: str) -> None:
    """At the default limit (2,000,000 values) the worst shape of body, all tiny values,
    raises the serving worker's peak by well under the 300 MB the hardening issue allows."""
    server = ServerProcess(database_url)
    try:
        worker = serving_worker(server)
        before = memory(worker)
        started = time.monotonic()
        refused = server.client.post("Basic", content=_tiny_values(500_001),
                                     headers=FHIR_JSON)
        outcome(refused, 413, "over the limit of 1,000,000")
        assert time.monotonic() - started < 5
        largest = server.client.post("Basic", content=_tiny_values(499_000), headers=FHIR_JSON)
        assert largest.status_code < 500, largest.text[:300]
        grown = memory(worker, "VmHWM") - before
        assert grown < 300 * 1024 * 1024, f"peak grew by {grown // 2**20} MB"
    finally:
        server.stop()
