"""The benchmark's corpus, small: the Synthea fixtures' claims adjudicated over real HTTP,
single and in a batch, on SQLite and PostgreSQL; every ClaimResponse and EOB reconciles
(benchmarks/insurance.py runs the same check on the whole corpus) and is valid FHIR."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from benchmarks.insurance import corpus, kind, reconcile

from hygeia.fhir.validation import validate
from tests.conftest import BACKENDS, ServerProcess, backend_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "synthea"


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, list[dict[str, Any]]]]:
    """A server holding the three fixture patients, each with a demo Coverage, and the
    claims made from their Synthea claims, in service-date order."""
    folder = tmp_path_factory.mktemp("corpus")
    claims = corpus(FIXTURES, 3, folder)
    with backend_server(request, tmp_path_factory, "inscorpus") as process:
        for command in (["insurance", "demo"],
                        ["load", "--quiet", *sorted(map(str, folder.glob("*.ndjson")))]):
            done = subprocess.run([sys.executable, "-m", "hygeia.cli.main", *command,
                                   "--db", process.db_url], capture_output=True, text=True,
                                  check=False)
            assert done.returncode == 0, done.stderr
        yield process, claims


def valid(resource: dict[str, Any]) -> None:
    issues = validate(resource, resource["resourceType"])
    assert not issues, (resource["resourceType"], issues[:3])


def test_every_claim_of_the_corpus_reconciles_single_and_batched(
        loaded: tuple[ServerProcess, list[dict[str, Any]]]) -> None:
    server, claims = loaded
    assert len(claims) > 30
    # the first patient's claims one by one, the others' in one batch Bundle
    first = claims[0]["patient"]["reference"]
    single = [claim for claim in claims if claim["patient"]["reference"] == first]
    batched = [claim for claim in claims if claim["patient"]["reference"] != first]
    responses = []
    for claim in single:
        answer = server.client.post("Claim/$submit", json=claim)
        assert answer.status_code == 200, answer.text
        responses.append(answer.json())
    answer = server.client.post("Claim/$submit", json={
        "resourceType": "Bundle", "type": "batch",
        "entry": [{"resource": claim} for claim in batched]})
    assert answer.status_code == 200, answer.text
    responses.extend(entry["resource"] for entry in answer.json()["entry"])
    kinds = Counter(kind(response) for response in responses)  # reconciles each complete one
    assert sum(kinds.values()) == len(claims)
    assert kinds["auto"] >= 0.9 * len(claims), kinds  # the record documents nearly all
    for response in responses:
        valid(response)
    eobs = server.client.get("ExplanationOfBenefit", params={
        "status": "active", "_count": "1000"}).json().get("entry") or []
    ours = [entry["resource"] for entry in eobs if "claimResponse" in entry["resource"]]
    assert len(ours) == kinds["auto"] + kinds["denied"]
    for eob in ours:
        reconcile(eob)
        valid(eob)


def test_reconcile_catches_an_amount_that_does_not_add_up() -> None:
    def part(submitted: str, eligible: str, noncovered: str) -> list[dict[str, Any]]:
        values = {"submitted": submitted, "eligible": eligible, "noncovered": noncovered,
                  "benefit": eligible, "memberliability": "0"}
        return [{"category": {"coding": [{"code": code}]}, "amount": {"value": float(value)}}
                for code, value in values.items()]

    good = {"resourceType": "ClaimResponse", "item": [{"itemSequence": 1, "adjudication":
                                                       part("100", "80", "20")}],
            "total": part("100", "80", "20")}
    reconcile(good)
    with pytest.raises(AssertionError):
        reconcile({**good, "total": part("100", "80", "30")})
    with pytest.raises(AssertionError):  # the totals must also be the sum of the lines
        reconcile({**good, "total": part("90", "70", "20")})


def test_a_batch_of_malformed_claims_answers_each_entry_not_a_crash(
        loaded: tuple[ServerProcess, list[dict[str, Any]]]) -> None:
    server, claims = loaded
    good = claims[0]
    bad = [{**good, "insurance": "Coverage/x"}, {**good, "patient": ["Patient/x"]},
           {**good, "billablePeriod": 7}, {**good, "insurance": [{"coverage": 3}]},
           {"resourceType": "Claim"}]
    answer = server.client.post("Claim/$submit", json={
        "resourceType": "Bundle", "type": "batch", "entry": [{"resource": b} for b in bad]})
    assert answer.status_code == 200, answer.text
    for entry in answer.json()["entry"]:
        status, resource = int(entry["response"]["status"]), entry["resource"]
        assert (status == 200 and resource["outcome"] == "error") or \
            (400 <= status < 500 and resource["resourceType"] == "OperationOutcome"), entry
