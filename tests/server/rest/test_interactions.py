"""FHIR interactions through the transport-free service, on both backends."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import (
    BadRequest,
    Gone,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    UnsupportedMediaType,
)
from hygeia.server import FhirService
from tests.helpers import body, call, patient, unique


def test_create_assigns_id_version_and_meta(service: FhirService) -> None:
    response = call(service, "POST", "Patient", patient(id="client-id"))
    created = body(response)
    assert response.status == 201
    assert created["id"] != "client-id"  # the server ignores ids on create
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"].endswith("Z")
    assert response.location == f"http://test/fhir/Patient/{created['id']}/_history/1"
    assert response.etag == 'W/"1"'


def test_read_returns_what_was_stored(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient(family="Read")))
    read = call(service, "GET", f"Patient/{created['id']}")
    assert read.status == 200
    assert body(read) == created


def test_update_creates_new_version_and_vread_keeps_old(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient(family="One")))
    changed = {**created, "name": [{"family": "Two"}]}
    updated = call(service, "PUT", f"Patient/{created['id']}", changed)
    assert updated.status == 200
    assert body(updated)["meta"]["versionId"] == "2"
    old = body(call(service, "GET", f"Patient/{created['id']}/_history/1"))
    assert old["name"] == [{"family": "One"}]
    assert body(call(service, "GET", f"Patient/{created['id']}"))["name"] == [{"family": "Two"}]


def test_update_as_create_with_client_id(service: FhirService) -> None:
    id = f"c-{unique()[:12]}"
    response = call(service, "PUT", f"Patient/{id}", patient(id=id))
    assert response.status == 201
    assert body(response)["id"] == id


def test_update_rejects_mismatched_id(service: FhirService) -> None:
    with pytest.raises(BadRequest, match="must equal the id in the URL"):
        call(service, "PUT", "Patient/abc", patient(id="xyz"))


def test_if_match_stale_version_is_412(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient()))
    url = f"Patient/{created['id']}"
    call(service, "PUT", url, created, if_match='W/"1"')
    with pytest.raises(PreconditionFailed, match="version 2"):
        call(service, "PUT", url, created, if_match='W/"1"')


def test_delete_then_read_is_gone_and_history_shows_it(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient()))
    url = f"Patient/{created['id']}"
    assert call(service, "DELETE", url).status == 204
    with pytest.raises(Gone):
        call(service, "GET", url)
    history = body(call(service, "GET", f"{url}/_history"))
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert call(service, "DELETE", url).status == 204  # deleting again changes nothing
    assert len(body(call(service, "GET", f"{url}/_history"))["entry"]) == 2


def test_unknown_id_and_type_are_404(service: FhirService) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        call(service, "GET", "Patient/nope")
    with pytest.raises(NotFound, match="not a FHIR R4 resource type"):
        call(service, "GET", "Patient2/x")


def test_invalid_resource_is_422_and_not_stored(service: FhirService) -> None:
    bad = patient(identifier="x-invalid", birthDate="not-a-date")
    with pytest.raises(Unprocessable) as raised:
        call(service, "POST", "Patient", bad)
    assert any(i.expression == "Patient.birthDate" for i in raised.value.issues)
    found = body(call(service, "GET", "Patient?identifier=urn:test|x-invalid"))
    assert found["total"] == 0


def test_conditional_create_returns_existing(service: FhirService) -> None:
    key = unique()
    first = call(service, "POST", "Patient", patient(key),
                 if_none_exist=f"identifier=urn:test|{key}")
    second = call(service, "POST", "Patient", patient(key),
                  if_none_exist=f"identifier=urn:test|{key}")
    assert (first.status, second.status) == (201, 200)
    assert body(first)["id"] == body(second)["id"]


def test_conditional_create_with_many_matches_is_412(service: FhirService) -> None:
    key = unique()
    call(service, "POST", "Patient", patient(key))
    call(service, "POST", "Patient", patient(key))
    with pytest.raises(PreconditionFailed, match="more than one"):
        call(service, "POST", "Patient", patient(key), if_none_exist=f"identifier=urn:test|{key}")


def test_conditional_update_creates_then_updates(service: FhirService) -> None:
    key = unique()
    url = f"Patient?identifier=urn:test|{key}"
    created = call(service, "PUT", url, patient(key, family="A"))
    updated = call(service, "PUT", url, patient(key, family="B"))
    assert (created.status, updated.status) == (201, 200)
    assert body(created)["id"] == body(updated)["id"]
    assert body(updated)["meta"]["versionId"] == "2"


def test_conditional_delete_single_and_many(service: FhirService) -> None:
    key, many = unique(), unique()
    created = body(call(service, "POST", "Patient", patient(key)))
    assert call(service, "DELETE", f"Patient?identifier={key}").status == 204
    with pytest.raises(Gone):
        call(service, "GET", f"Patient/{created['id']}")
    call(service, "POST", "Patient", patient(many))
    call(service, "POST", "Patient", patient(many))
    with pytest.raises(PreconditionFailed):
        call(service, "DELETE", f"Patient?identifier={many}")


def test_conditional_criteria_must_be_understood(service: FhirService) -> None:
    with pytest.raises(BadRequest, match="not known"):
        call(service, "DELETE", "Patient?shoe-size=x")


def test_json_patch(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient(family="Before")))
    ops = [{"op": "replace", "path": "/name/0/family", "value": "After"},
           {"op": "add", "path": "/gender", "value": "female"}]
    patched = call(service, "PATCH", f"Patient/{created['id']}", ops,
                   content_type="application/json-patch+json")
    assert body(patched)["name"][0]["family"] == "After"
    assert body(patched)["meta"]["versionId"] == "2"


def test_json_patch_that_makes_resource_invalid_is_refused(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient()))
    ops = [{"op": "add", "path": "/gender", "value": "sometimes"}]
    with pytest.raises(Unprocessable):
        call(service, "PATCH", f"Patient/{created['id']}", ops,
             content_type="application/json-patch+json")
    assert body(call(service, "GET", f"Patient/{created['id']}"))["meta"]["versionId"] == "1"


def test_fhirpath_patch(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient(family="Before")))
    operations = {"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [{"name": "type", "valueCode": "replace"},
                                       {"name": "path", "valueString": "Patient.name[0].family"},
                                       {"name": "value", "valueString": "After"}]},
        {"name": "operation", "part": [{"name": "type", "valueCode": "add"},
                                       {"name": "path", "valueString": "Patient"},
                                       {"name": "name", "valueString": "birthDate"},
                                       {"name": "value", "valueDate": "1970-01-02"}]}]}
    patched = body(call(service, "PATCH", f"Patient/{created['id']}", operations,
                        content_type="application/fhir+json"))
    assert patched["name"][0]["family"] == "After"
    assert patched["birthDate"] == "1970-01-02"


def test_patch_with_other_media_type_is_415(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient()))
    with pytest.raises(UnsupportedMediaType):
        call(service, "PATCH", f"Patient/{created['id']}", {"resourceType": "Patient"},
             content_type="application/fhir+json")


def test_search_by_id_and_identifier(service: FhirService) -> None:
    key = unique()
    a = body(call(service, "POST", "Patient", patient(key)))
    body(call(service, "POST", "Patient", patient(unique())))
    by_identifier = body(call(service, "GET", f"Patient?identifier=urn:test|{key}"))
    assert [e["resource"]["id"] for e in by_identifier["entry"]] == [a["id"]]
    by_code_only = body(call(service, "GET", f"Patient?identifier={key}"))
    assert by_code_only["total"] == 1
    wrong_system = body(call(service, "GET", f"Patient?identifier=urn:other|{key}"))
    assert wrong_system["total"] == 0
    by_id = body(call(service, "GET", f"Patient?_id={a['id']}"))
    assert by_id["total"] == 1


def test_search_reports_ignored_parameters(service: FhirService) -> None:
    result = body(call(service, "GET", "Patient?shoe-size=x"))
    outcome = [e for e in result["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "shoe-size" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    with pytest.raises(BadRequest):
        call(service, "GET", "Patient?shoe-size=x", prefer_strict=True)


def test_history_since_at_and_paging(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient()))
    url = f"Patient/{created['id']}"
    for family in ("B", "C", "D"):
        current = body(call(service, "GET", url))
        call(service, "PUT", url, {**current, "name": [{"family": family}]})
    v2 = body(call(service, "GET", f"{url}/_history/2"))
    since = body(call(service, "GET", f"{url}/_history?_since={v2['meta']['lastUpdated']}"))
    assert [e["resource"]["meta"]["versionId"] for e in since["entry"]] == ["4", "3", "2"]
    at = body(call(service, "GET", f"{url}/_history?_at={v2['meta']['lastUpdated']}"))
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["2"]
    page1 = body(call(service, "GET", f"{url}/_history?_count=3"))
    next_url = next(link["url"] for link in page1["link"] if link["relation"] == "next")
    page2 = body(call(service, "GET", next_url.replace("http://test/fhir/", "")))
    versions = [e["resource"]["meta"]["versionId"] for e in page1["entry"] + page2["entry"]]
    assert versions == ["4", "3", "2", "1"]


def test_type_and_system_history(service: FhirService) -> None:
    p = body(call(service, "POST", "Patient", patient()))
    o = body(call(service, "POST", "Organization", {"resourceType": "Organization",
                                                     "name": "Org"}))
    type_history = body(call(service, "GET", "Patient/_history"))
    assert {e["resource"]["id"] for e in type_history["entry"]} == {p["id"]}
    system = body(call(service, "GET", "_history"))
    assert [e["resource"]["id"] for e in system["entry"][:2]] == [o["id"], p["id"]]


def test_validate_operation_reports_all_issues(service: FhirService) -> None:
    bad = patient(birthDate="1990-13-01", gender="sometimes", unknownThing=1)
    outcome = body(call(service, "POST", "Patient/$validate", bad))
    expressions = {i["expression"][0] for i in outcome["issue"] if "expression" in i}
    assert {"Patient.birthDate", "Patient.gender", "Patient.unknownThing"} <= expressions
    good = body(call(service, "POST", "Patient/$validate", patient()))
    assert good["issue"][0]["severity"] == "information"


def test_capability_statement_lists_what_is_implemented(service: FhirService) -> None:
    statement = body(call(service, "GET", "metadata"))
    patient_entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    names = {p["name"] for p in patient_entry["searchParam"]}
    assert {"_id", "_lastUpdated", "identifier", "name", "birthdate", "general-practitioner",
            "_tag", "_profile"} <= names
    assert not names & {"_text", "_content", "_query"}  # not implemented, so not claimed
    assert "Patient:general-practitioner" in patient_entry["searchInclude"]
    assert "Observation:subject" in patient_entry["searchRevInclude"]
    assert patient_entry["conditionalDelete"] == "single"
    codes = {i["code"] for i in statement["rest"][0]["interaction"]}
    assert codes == {"transaction", "batch", "history-system", "search-system"}


def test_capability_statement_is_valid_r4(service: FhirService) -> None:
    from hygeia.fhir.validation import validate

    statement = body(call(service, "GET", "metadata"))
    assert validate(statement) == []
    assert "SubscriptionStatus" not in {r["type"] for r in statement["rest"][0]["resource"]}
