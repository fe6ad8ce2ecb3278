"""X-Provenance: stored with the write it describes, aimed at the version it stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.validation import validate
from hygeia.server import AuditSettings, FhirService
from hygeia.server.rest.provenance import provenance_for
from hygeia.store.base import HistoryQuery
from tests.helpers import body, call, patient

AGENT = [{"who": {"display": "Dr Ada"}}]


def header(**extra: Any) -> str:
    return orjson.dumps({"resourceType": "Provenance", "agent": AGENT, **extra}).decode()


def stored(service: FhirService, resource_type: str) -> list[dict[str, Any]]:
    with service.reader() as session:
        versions = session.history(HistoryQuery(resource_type=resource_type))
    return [orjson.loads(v.content or b"{}") for v in versions]


def test_a_create_stores_its_provenance_aimed_at_the_new_version(service: FhirService) -> None:
    response = call(service, "POST", "Patient", patient("p"),
                    provenance=header(target=[{"reference": "Patient/other"}], id="mine"))
    created = body(response)
    [provenance] = stored(service, "Provenance")
    assert provenance["target"] == [{"reference": f"Patient/{created['id']}/_history/1"}]
    assert provenance["recorded"] and provenance["agent"] == AGENT
    assert provenance["id"] != "mine"  # the server names what it stores
    assert validate(provenance, "Provenance") == []


def test_updates_and_patches_aim_at_their_own_version(service: FhirService) -> None:
    id = body(call(service, "POST", "Patient", patient("u")))["id"]
    call(service, "PUT", f"Patient/{id}", {**patient("u", family="Roe"), "id": id},
         provenance=header())
    call(service, "PATCH", f"Patient/{id}", [{"op": "add", "path": "/gender",
                                              "value": "other"}],
         content_type="application/json-patch+json", provenance=header())
    call(service, "DELETE", f"Patient/{id}", provenance=header())
    targets = sorted(p["target"][0]["reference"] for p in stored(service, "Provenance"))
    assert targets == [f"Patient/{id}/_history/{v}" for v in (2, 3, 4)]


@pytest.mark.parametrize("bad", [
    "{not json",
    '"a string"',
    orjson.dumps({"resourceType": "Patient"}).decode(),
    orjson.dumps({"resourceType": "Provenance"}).decode(),  # agent is required
    orjson.dumps({"resourceType": "Provenance", "agent": AGENT, "bogus": 1}).decode(),
])
def test_a_bad_header_is_400_and_nothing_is_stored(service: FhirService, bad: str) -> None:
    with pytest.raises(BadRequest) as raised:
        call(service, "POST", "Patient", patient("b"), provenance=bad)
    assert raised.value.outcome()["issue"][0]["expression"] == ["X-Provenance"]
    assert stored(service, "Patient") == [] and stored(service, "Provenance") == []


def test_a_write_that_stores_nothing_stores_no_provenance(service: FhirService) -> None:
    call(service, "POST", "Patient", patient("c"))
    again = call(service, "POST", "Patient", patient("c"), provenance=header(),
                 if_none_exist="identifier=urn:test|c")
    assert again.status == 200
    call(service, "DELETE", "Patient", query=[("identifier", "urn:test|none")],
         provenance=header())
    assert stored(service, "Provenance") == []


def test_the_audit_event_of_the_write_names_its_provenance(repository: Any) -> None:
    from hygeia.server import Settings

    audited = FhirService(repository, Settings(audit=AuditSettings(enabled=True)))
    try:
        response = call(audited, "POST", "Patient", patient("a"), provenance=header())
        [provenance] = stored(audited, "Provenance")
        [event] = stored(audited, "AuditEvent")
        whats = [e["what"].get("reference") for e in event["entity"]]
        assert response.location is not None
        assert response.location.removeprefix("http://test/fhir/") in whats
        assert f"Provenance/{provenance['id']}/_history/1" in whats
    finally:
        audited.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["resourceType", "agent", "who", "display", "target",
                                       "reference", "recorded", "activity", "id", "meta",
                                       "entity", "role", "what", "occurredDateTime"]),
                      children, max_size=4),
    max_leaves=15)
headers = st.one_of(
    st.text(max_size=40),
    json_values.map(lambda v: orjson.dumps(v).decode()),
    st.fixed_dictionaries({"resourceType": st.just("Provenance")}, optional={
        "agent": json_values, "target": json_values, "recorded": json_values,
        "entity": json_values}).map(lambda v: orjson.dumps(v).decode()),
)


@settings(max_examples=300, deadline=None)
@given(headers)
def test_any_header_is_a_provenance_or_a_400(text: str) -> None:
    """Whatever the header holds, the parser answers with a valid Provenance aimed at the
    write, or a 400 that points at the header; never anything else."""
    try:
        resource = provenance_for(text, "Patient/1/_history/1", 0)
    except BadRequest as error:
        assert error.issues[0].expression == "X-Provenance"
        return
    assert resource["target"] == [{"reference": "Patient/1/_history/1"}]
    assert validate(resource, "Provenance") == []
