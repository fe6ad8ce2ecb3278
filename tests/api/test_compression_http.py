"""Response compression through a real ``hygeia serve`` on both databases: the raw
bytes on the wire (httpx would decompress them silently), q-values, HEAD, 304, errors."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from hygeia.api.compression import accepts_gzip
from tests.conftest import ServerProcess
from tests.helpers import patient, unique

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _raw(client: httpx.Client, method: str, path: str, **headers: str
         ) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent, before any content decoding."""
    with client.stream(method, path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def test_the_capability_statement_is_gzipped_for_a_client_that_accepts_it(
        client: httpx.Client) -> None:
    response, raw = _raw(client, "GET", "metadata", **{"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert int(response.headers["content-length"]) == len(raw)
    plain, plain_raw = _raw(client, "GET", "metadata", **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["vary"]
    assert orjson.loads(gzip.decompress(raw)) == orjson.loads(plain_raw)
    assert len(raw) * 10 < len(plain_raw)  # 903 KB -> ~34 KB


@pytest.mark.parametrize(("accept_encoding", "coded"), [
    ("gzip, deflate, br", True),
    ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
    ("*", True),
    ("x-gzip", True),
    ("GZIP;Q=0.5", True),
    ("gzip;q=0", False),
    ("identity;q=1, gzip;q=0.5", False),
    ("br", False),
    ("gzip;q=nonsense", False),
    ("", False),
])
def test_accept_encoding_q_values_are_honoured(client: httpx.Client, accept_encoding: str,
                                               coded: bool) -> None:
    response, raw = _raw(client, "GET", "metadata", **{"Accept-Encoding": accept_encoding})
    assert response.status_code == 200
    assert (response.headers.get("content-encoding") == "gzip") is coded
    assert accepts_gzip(accept_encoding) is coded
    assert (raw[:2] == b"\x1f\x8b") is coded  # the gzip magic number


def test_head_announces_the_same_coding_and_length_as_get(client: httpx.Client) -> None:
    get, raw = _raw(client, "GET", "metadata", **{"Accept-Encoding": "gzip"})
    head, nothing = _raw(client, "HEAD", "metadata", **{"Accept-Encoding": "gzip"})
    assert nothing == b"" and len(raw) == int(get.headers["content-length"])
    for field in ("content-encoding", "content-length", "vary"):
        assert head.headers[field] == get.headers[field]


def test_a_search_bundle_is_gzipped_and_a_small_read_is_not(client: httpx.Client) -> None:
    family = unique()
    created = [client.post("Patient", content=orjson.dumps(patient(unique(), family=family)),
                           headers=FHIR_JSON) for _ in range(20)]
    assert all(response.status_code == 201 for response in created)
    bundle, raw = _raw(client, "GET", f"Patient?family={family}&_count=50",
                       **{"Accept-Encoding": "gzip"})
    assert bundle.headers["content-encoding"] == "gzip"
    assert len(orjson.loads(gzip.decompress(raw))["entry"]) == 20

    read, body = _raw(client, "GET", f"Patient/{created[0].json()['id']}",
                      **{"Accept-Encoding": "gzip"})
    assert len(body) < 1024 and "content-encoding" not in read.headers  # not worth it
    assert "Accept-Encoding" in read.headers["vary"]
    assert orjson.loads(body)["resourceType"] == "Patient"


def test_not_modified_has_no_body_and_says_vary(client: httpx.Client) -> None:
    created = client.post("Patient", content=orjson.dumps(patient(unique())), headers=FHIR_JSON)
    response, raw = _raw(client, "GET", f"Patient/{created.json()['id']}",
                         **{"Accept-Encoding": "gzip", "If-None-Match": created.headers["etag"]})
    assert response.status_code == 304 and raw == b""
    assert "content-encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["vary"]


def test_a_large_error_outcome_is_gzipped_too(client: httpx.Client) -> None:
    invalid = patient(unique(), **{f"unknownElement{n}": n for n in range(40)})
    response = client.post("Patient", content=orjson.dumps(invalid),
                           headers={**FHIR_JSON, "Accept-Encoding": "gzip"})
    assert response.status_code in (400, 422)
    assert response.headers["content-encoding"] == "gzip"
    assert response.num_bytes_downloaded < len(response.content)
    outcome = response.json()  # httpx decoded it: the coding is well formed
    assert outcome["resourceType"] == "OperationOutcome" and len(outcome["issue"]) >= 10


def test_cross_origin_answers_are_gzipped_and_small_probes_are_not(
        server: ServerProcess) -> None:
    response, _ = _raw(server.client, "GET", "metadata",
                       **{"Accept-Encoding": "gzip", "Origin": "https://app.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["content-encoding"] == "gzip"
    health = httpx.get(server.base.removesuffix("/fhir") + "/health",
                       headers={"Accept-Encoding": "gzip"})
    assert health.status_code == 200 and "content-encoding" not in health.headers
