"""Search through the service on both backends: every parameter type, modifier and result option."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.outcome import BadRequest
from hygeia.server import FhirService
from tests.helpers import body, call

LOINC = "http://loinc.org"


def put(service: FhirService, resource: dict[str, Any]) -> None:
    call(service, "PUT", f"{resource['resourceType']}/{resource['id']}", resource)


def observation(id: str, patient: str, code: str, value: float | None, when: str,
                **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": f"Code {code}"}],
                 "text": f"Measured {code}"},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when}
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": "kg",
                                     "system": "http://unitsofmeasure.org", "code": "kg"}
    resource.update(extra)
    return resource


def blood_pressure(id: str, patient: str, systolic: float, diastolic: float) -> dict[str, Any]:
    def component(code: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]",
                                  "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
    return observation(id, patient, "85354-9", None, "2021-06-01",
                       component=[component("8480-6", systolic), component("8462-4", diastolic)])


@pytest.fixture
def data(service: FhirService) -> FhirService:
    put(service, {"resourceType": "Organization", "id": "org1", "name": "Springfield General"})
    put(service, {"resourceType": "Practitioner", "id": "dr1",
                  "name": [{"family": "Hibbert", "given": ["Julius"]}]})
    put(service, {"resourceType": "Patient", "id": "p1", "gender": "male",
                  "birthDate": "1956-05-12", "active": True,
                  "name": [{"family": "Simpson", "given": ["Homer", "Jay"]}],
                  "identifier": [{"system": "urn:mrn", "value": "111",
                                  "type": {"coding": [{"system": "http://terminology.hl7.org/"
                                                                 "CodeSystem/v2-0203",
                                                       "code": "MR"}]}}],
                  "telecom": [{"system": "phone", "value": "555-1234"}],
                  "address": [{"city": "Springfield", "postalCode": "49007"}],
                  "managingOrganization": {"reference": "Organization/org1"},
                  "generalPractitioner": [{"reference": "Practitioner/dr1"}]})
    put(service, {"resourceType": "Patient", "id": "p2", "gender": "female",
                  "birthDate": "1987-01", "name": [{"family": "Müller", "given": ["Zoë"]}],
                  "address": [{"city": "Zürich"}]})
    put(service, {"resourceType": "Patient", "id": "p3", "gender": "female",
                  "birthDate": "1956", "name": [{"family": "Simpsonite"}]})
    put(service, observation("w1", "p1", "29463-7", 110.5, "2021-01-15T10:00:00Z"))
    put(service, observation("w2", "p1", "29463-7", 112, "2021-03-01"))
    put(service, observation("w3", "p2", "29463-7", 61.2, "2020-12-31T23:30:00Z"))
    put(service, observation("h1", "p2", "8302-2", 170, "2021-02-10",
                             performer=[{"reference": "Practitioner/dr1"}]))
    put(service, blood_pressure("bp1", "p1", 150, 95))
    put(service, blood_pressure("bp2", "p2", 120, 150))
    put(service, {"resourceType": "Encounter", "id": "e1", "status": "finished",
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                            "code": "AMB"},
                  "subject": {"reference": "Patient/p1"},
                  "period": {"start": "2021-01-15T09:00:00Z", "end": "2021-01-15T11:00:00Z"}})
    return service


def ids(service: FhirService, query: str) -> list[str]:
    bundle = body(call(service, "GET", query))
    return sorted(e["resource"]["id"] for e in bundle.get("entry", [])
                  if e["search"]["mode"] == "match")


def test_string_default_exact_contains_and_accents(data: FhirService) -> None:
    assert ids(data, "Patient?family=simp") == ["p1", "p3"]
    assert ids(data, "Patient?family:exact=Simpson") == ["p1"]
    assert ids(data, "Patient?family:exact=simpson") == []
    assert ids(data, "Patient?name:contains=pson") == ["p1", "p3"]
    assert ids(data, "Patient?family=muller") == ["p2"]  # accent-insensitive
    assert ids(data, "Patient?given=zoe") == ["p2"]
    assert ids(data, "Patient?address-city=zurich") == ["p2"]
    assert ids(data, "Patient?name=homer,zoe") == ["p1", "p2"]  # OR
    assert ids(data, "Patient?name=simpson&name=homer") == ["p1"]  # AND


def test_token_forms_and_modifiers(data: FhirService) -> None:
    assert ids(data, "Patient?gender=female") == ["p2", "p3"]
    assert ids(data, "Patient?gender:not=female") == ["p1"]
    assert ids(data, f"Observation?code={LOINC}|29463-7") == ["w1", "w2", "w3"]
    assert ids(data, "Observation?code=|29463-7") == []
    assert ids(data, "Observation?code=http://other|29463-7") == []
    assert ids(data, "Observation?code:text=measured 8302") == ["h1"]
    assert ids(data, "Patient?identifier=urn:mrn|111") == ["p1"]
    assert ids(data, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/"
                     "v2-0203|MR|111") == ["p1"]
    assert ids(data, "Patient?active=true") == ["p1"]
    assert ids(data, "Patient?phone=555-1234") == ["p1"]


def test_date_precision_and_prefixes(data: FhirService) -> None:
    assert ids(data, "Patient?birthdate=1956") == ["p1", "p3"]
    assert ids(data, "Patient?birthdate=1956-05") == ["p1"]
    assert ids(data, "Patient?birthdate=ge1987-01-15") == ["p2"]  # overlaps the month
    assert ids(data, "Patient?birthdate=lt1960") == ["p1", "p3"]
    assert ids(data, "Observation?date=2021-01-15&code=29463-7") == ["w1"]
    assert ids(data, "Observation?date=gt2021-02-01&code=29463-7") == ["w2"]
    assert ids(data, "Observation?date=le2020-12-31T23:59:59Z&code=29463-7") == ["w3"]
    assert ids(data, "Encounter?date=2021-01-15") == ["e1"]  # period inside the day
    assert ids(data, "Encounter?date=sa2021-01-16") == []
    assert ids(data, "Encounter?date=eb2021-01-16") == ["e1"]


def test_quantity_and_number(data: FhirService) -> None:
    assert ids(data, "Observation?value-quantity=gt111") == ["h1", "w2"]
    assert ids(data, "Observation?value-quantity=110.5") == ["w1"]
    assert ids(data, "Observation?value-quantity=110") == []  # [109.5, 110.5) excludes 110.5
    assert ids(data, "Observation?value-quantity=1.1e2") == ["w1", "w2"]  # [105, 115)
    assert ids(data, "Observation?value-quantity=le62|http://unitsofmeasure.org|kg") == ["w3"]
    assert ids(data, "Observation?value-quantity=ap110||kg") == ["w1", "w2"]
    assert ids(data, "Observation?value-quantity=lt200||g") == []


def test_reference_forms(data: FhirService) -> None:
    assert ids(data, "Observation?subject=Patient/p2") == ["bp2", "h1", "w3"]
    assert ids(data, "Observation?subject=p2") == ["bp2", "h1", "w3"]
    assert ids(data, "Observation?subject:Patient=p2") == ["bp2", "h1", "w3"]
    assert ids(data, "Observation?patient=p2&code=8302-2") == ["h1"]
    assert ids(data, "Observation?performer=Practitioner/dr1") == ["h1"]
    assert ids(data, "Patient?general-practitioner:missing=true") == ["p2", "p3"]


def test_chains_and_reverse_chains(data: FhirService) -> None:
    assert ids(data, "Observation?subject:Patient.name=simpson&code=29463-7") == ["w1", "w2"]
    assert ids(data, "Observation?patient.organization.name=springfield") == ["bp1", "w1", "w2"]
    assert ids(data, "Patient?_has:Observation:patient:code=8302-2") == ["p2"]
    assert ids(data, "Patient?_has:Observation:subject:_has:Provenance:target:agent=x") == []
    with pytest.raises(BadRequest, match="cannot point at a Observation"):
        call(data, "GET", "Patient?_has:Observation:subject:_has:Encounter:subject:class=AMB")
    assert ids(data, "Patient?_has:Encounter:subject:class=AMB") == ["p1"]


def test_composite(data: FhirService) -> None:
    assert ids(data, f"Observation?component-code-value-quantity={LOINC}|8480-6$gt140") == [
        "bp1"]
    # the 150 belongs to the diastolic component of bp2: composites must not mix components
    assert ids(data, f"Observation?component-code-value-quantity={LOINC}|8480-6$ge150") == [
        "bp1"]


def test_combo_parameters_search_the_rows_they_share(data: FhirService) -> None:
    """combo-* parameters store no rows: they read those of code, component-code..."""
    assert ids(data, "Observation?combo-code=8480-6") == ["bp1", "bp2"]
    assert ids(data, "Observation?combo-code=29463-7,8302-2") == ["h1", "w1", "w2", "w3"]
    assert ids(data, "Observation?combo-code:text=measured 8302") == ["h1"]
    assert ids(data, "Observation?combo-value-quantity=gt140") == ["bp1", "bp2", "h1"]
    assert ids(data, f"Observation?combo-code-value-quantity={LOINC}|8480-6$gt140") == ["bp1"]
    assert ids(data, f"Observation?combo-code-value-quantity={LOINC}|8302-2$170") == ["h1"]
    assert ids(data, "Observation?combo-value-quantity:missing=true") == []
    ordered = body(call(data, "GET", "Observation?combo-code=8480-6,8302-2"
                                     "&_sort=-combo-value-quantity"))
    assert [e["resource"]["id"] for e in ordered["entry"]] == ["h1", "bp1", "bp2"]
    assert ids(data, "Patient?_has:Observation:patient:combo-code=8480-6") == ["p1", "p2"]


def test_driving_clause_keys_are_rechecked_exactly(data: FhirService) -> None:
    """The driving clause's candidates come from the lookup key alone (code hash, composite
    code); the exact value, system included, is still checked, and key-ordered pages
    still visit every match once."""
    other = observation("x1", "p1", "29463-7", 111, "2021-01-01")
    other["code"]["coding"][0]["system"] = "http://example.org/codes"
    put(data, other)
    bp = blood_pressure("x2", "p1", 160, 90)
    bp["component"][0]["code"]["coding"][0]["system"] = "http://example.org/codes"
    put(data, bp)
    assert ids(data, f"Observation?code={LOINC}|29463-7") == ["w1", "w2", "w3"]
    assert ids(data, "Observation?code=29463-7") == ["w1", "w2", "w3", "x1"]
    assert ids(data, f"Observation?code={LOINC}|29463-7&value-quantity=gt111") == ["w2"]
    assert ids(data, f"Observation?component-code-value-quantity={LOINC}|8480-6$gt140") == [
        "bp1"]
    seen: list[str] = []
    page = body(call(data, "GET", "Observation?code=29463-7&_count=1&_total=none"))
    while True:
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        link = next((k["url"] for k in page["link"] if k["relation"] == "next"), None)
        if link is None:
            break
        page = body(call(data, "GET", link.removeprefix("http://test/fhir/")))
    assert sorted(seen) == ["w1", "w2", "w3", "x1"]


def test_key_walk_pages_forwards_and_backwards(service: FhirService) -> None:
    """A broad code with sparse value matches: pages walk the code's keys in ranges
    (64, then 256 ...) and must neither skip nor repeat across range boundaries."""
    entries = [{"resource": observation(f"o{n:03}", "p1", "8302-2", 150 + n % 7 * 10, "2021"),
                "request": {"method": "PUT", "url": f"Observation/o{n:03}"}}
               for n in range(300)]
    call(service, "POST", "", {"resourceType": "Bundle", "type": "transaction",
                               "entry": entries})
    query = f"Observation?code={LOINC}|8302-2&value-quantity=gt205&_count=7&_total=none"
    expected = [f"o{n:03}" for n in range(300) if 150 + n % 7 * 10 > 205]
    pages = [body(call(service, "GET", query))]
    while (link := _link(pages[-1], "next")) is not None:
        pages.append(body(call(service, "GET", link)))
    assert [e["resource"]["id"] for page in pages for e in page["entry"]] == expected
    back = [pages[-1]]
    while (link := _link(back[-1], "previous")) is not None:
        back.append(body(call(service, "GET", link)))
    assert [e["resource"]["id"] for page in reversed(back) for e in page["entry"]] == expected


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    url = next((k["url"] for k in bundle["link"] if k["relation"] == relation), None)
    return None if url is None else url.removeprefix("http://test/fhir/")


def test_narrowed_reference_parameters(data: FhirService) -> None:
    """Observation patient reads the subject rows that point at a Patient, nothing else."""
    put(data, {"resourceType": "Group", "id": "g1", "type": "person", "actual": True})
    put(data, observation("g-obs", "p1", "29463-7", 80, "2021-05-01",
                          subject={"reference": "Group/g1"}))
    assert ids(data, "Observation?subject=g1") == ["g-obs"]
    assert ids(data, "Observation?patient=g1") == []
    assert ids(data, "Observation?patient:missing=true") == ["g-obs"]
    assert "g-obs" not in ids(data, "Observation?patient:missing=false")
    assert ids(data, "Observation?patient.name=simpson&code=29463-7") == ["w1", "w2"]
    assert ids(data, "Group?_has:Observation:subject:code=29463-7") == ["g1"]
    included = body(call(data, "GET", "Observation?_id=g-obs,w1&_include=Observation:patient"))
    assert sorted(e["resource"]["id"] for e in included["entry"]
                  if e["search"]["mode"] == "include") == ["p1"]
    everything = body(call(data, "GET", "Patient/p1/$everything?_count=100"))
    assert "g-obs" not in {e["resource"]["id"] for e in everything["entry"]}
    put(data, {"resourceType": "Encounter", "id": "e2", "status": "finished",
               "class": {"code": "AMB"}, "subject": {"reference": "Patient/p2"},
               "participant": [{"individual": {"reference": "Practitioner/dr1"}},
                               {"individual": {"reference": "RelatedPerson/r1"}}]})
    assert ids(data, "Encounter?practitioner=dr1") == ["e2"]
    assert ids(data, "Encounter?practitioner=r1") == []
    assert ids(data, "Encounter?participant=r1") == ["e2"]


def test_special_parameters(data: FhirService) -> None:
    assert ids(data, "Patient?_id=p1,p3") == ["p1", "p3"]
    assert ids(data, "Patient?_lastUpdated=gt2000-01-01") == ["p1", "p2", "p3"]
    assert ids(data, "Patient?_lastUpdated=lt2000-01-01") == []


def test_sort_and_stable_cursor_paging(data: FhirService) -> None:
    bundle = body(call(data, "GET", "Observation?code=29463-7&_sort=-date&_count=2"))
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["w2", "w1"]
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    put(data, observation("w0", "p1", "29463-7", 100, "2022-01-01"))  # lands before the cursor
    page2 = body(call(data, "GET", next_url.removeprefix("http://test/fhir/")))
    assert [e["resource"]["id"] for e in page2["entry"]] == ["w3"]
    back = next(link["url"] for link in page2["link"]
                if link["relation"] == "previous")
    page1 = body(call(data, "GET", back.removeprefix("http://test/fhir/")))
    assert [e["resource"]["id"] for e in page1["entry"]] == ["w2", "w1"]
    by_name = body(call(data, "GET", "Patient?_sort=family,-birthdate"))
    assert [e["resource"]["id"] for e in by_name["entry"]] == ["p2", "p1", "p3"]


def test_total_summary_and_elements(data: FhirService) -> None:
    counted = body(call(data, "GET", "Patient?_summary=count"))
    assert counted["total"] == 3 and not counted.get("entry")
    untotalled = body(call(data, "GET", "Patient?_total=none"))
    assert "total" not in untotalled and len(untotalled["entry"]) == 3
    # a first page holding every match is its own count; later or partial pages count
    assert body(call(data, "GET", "Patient"))["total"] == 3
    first = body(call(data, "GET", "Patient?_count=2"))
    assert first["total"] == 3 and len(first["entry"]) == 2
    last_url = next(k["url"] for k in first["link"] if k["relation"] == "next")
    last = body(call(data, "GET", last_url.removeprefix("http://test/fhir/")))
    assert last["total"] == 3 and len(last["entry"]) == 1
    summary = body(call(data, "GET", "Patient?_id=p1&_summary=true"))["entry"][0]["resource"]
    assert "name" in summary and "managingOrganization" in summary
    assert "generalPractitioner" not in summary  # not a summary element in R4
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    elements = body(call(data, "GET", "Observation?_id=w1&_elements=value"))["entry"][0]
    assert set(elements["resource"]) == {"resourceType", "id", "meta", "valueQuantity"}


def test_include_and_revinclude(data: FhirService) -> None:
    bundle = body(call(data, "GET", "Observation?_id=w1&_include=Observation:subject"))
    modes = {(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("w1", "match"), ("p1", "include")}
    iterate = body(call(data, "GET", "Observation?_id=w1&_include=Observation:subject"
                                     "&_include:iterate=Patient:organization"))
    assert {e["resource"]["id"] for e in iterate["entry"]} == {"w1", "p1", "org1"}
    rev = body(call(data, "GET", "Patient?_id=p2&_revinclude=Observation:subject"))
    assert {e["resource"]["id"] for e in rev["entry"]} == {"p2", "w3", "h1", "bp2"}


def test_system_and_compartment_search(data: FhirService) -> None:
    assert ids(data, "?_type=Patient,Practitioner&_id=p1,dr1") == ["dr1", "p1"]
    assert ids(data, "Patient/p2/Observation") == ["bp2", "h1", "w3"]
    assert ids(data, "Patient/p2/Observation?code=8302-2") == ["h1"]
    with pytest.raises(BadRequest):
        call(data, "GET", "?_id=p1")


def test_deleted_resources_are_not_found(data: FhirService) -> None:
    call(data, "DELETE", "Observation/w3")
    assert ids(data, "Observation?subject=p2&code=29463-7") == []


def test_in_and_not_in_value_sets(data: FhirService) -> None:
    genders = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert ids(data, f"Patient?gender:in={genders}") == ["p1", "p2", "p3"]  # code: no system
    category = "http://hl7.org/fhir/ValueSet/observation-category"
    assert ids(data, f"Observation?category:in={category}&subject=p2") == ["bp2", "h1", "w3"]
    assert ids(data, f"Observation?category:not-in={category}") == []
    with pytest.raises(BadRequest, match="not one Hygeia can expand"):
        call(data, "GET", "Observation?code:in=http://example.org/ValueSet/unknown")


def test_custom_search_parameter_becomes_searchable(data: FhirService) -> None:
    custom = {"resourceType": "SearchParameter", "id": "patient-city-custom",
              "url": "http://example.org/SearchParameter/patient-birth-city", "name": "home-city",
              "status": "active", "description": "City of the patient's address",
              "code": "home-city", "base": ["Patient"], "type": "string",
              "expression": "Patient.address.city"}
    put(data, custom)
    statement = body(call(data, "GET", "metadata"))
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert "home-city" in {p["name"] for p in patient["searchParam"]}
    put(data, {"resourceType": "Patient", "id": "p9", "address": [{"city": "Shelbyville"}]})
    assert ids(data, "Patient?home-city=shelby") == ["p9"]  # indexed on write from now on
    assert ids(data, "Patient?home-city=springfield") == []  # older data waits for $reindex
    started = call(data, "POST", "Patient/$reindex")
    assert started.status == 202
    status_path = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    assert call(data, "GET", status_path).status == 202  # queued until a runner takes it
    assert data.job_runner().run_all() == 1
    done = call(data, "GET", status_path)
    assert done.status == 200 and "Reindex complete" in body(done)["issue"][0]["diagnostics"]
    assert ids(data, "Patient?home-city=springfield") == ["p1"]
    call(data, "DELETE", "SearchParameter/patient-city-custom")
    with pytest.raises(BadRequest, match="not known"):
        call(data, "GET", "Patient?home-city=shelby", prefer_strict=True)


def test_unusable_search_parameter_is_refused(data: FhirService) -> None:
    from hygeia.fhir.outcome import Unprocessable

    broken = {"resourceType": "SearchParameter", "url": "http://example.org/sp/bad",
              "name": "bad", "status": "active", "description": "no expression",
              "code": "bad", "base": ["Patient"], "type": "string"}
    with pytest.raises(Unprocessable, match="no FHIRPath expression"):
        call(data, "POST", "SearchParameter", broken)
    wide = {**broken, "url": "http://example.org/sp/wide", "code": "wide", "type": "composite",
            "expression": "Patient", "component": [
                {"definition": "http://hl7.org/fhir/SearchParameter/individual-gender",
                 "expression": "gender"}] * 4}
    with pytest.raises(Unprocessable, match="at most 3 components"):
        call(data, "POST", "SearchParameter", wide)


def test_composite_values_combine_within_their_group(data: FhirService) -> None:
    """Every combination of one component's codings with the other's value matches."""
    bp = blood_pressure("bp3", "p3", 170, 100)
    bp["component"][0]["code"]["coding"].append({"system": "http://example.org/bp",
                                                 "code": "SYS"})
    put(data, bp)
    assert ids(data, "Observation?component-code-value-quantity="
                     "http://example.org/bp|SYS$gt165") == ["bp3"]
    assert ids(data, f"Observation?component-code-value-quantity={LOINC}|8480-6$gt165") == [
        "bp3"]
    assert ids(data, "Observation?component-code-value-quantity="
                     "http://example.org/bp|SYS$lt150") == []


def test_patient_everything(data: FhirService) -> None:
    bundle = body(call(data, "GET", "Patient/p1/$everything"))
    found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
    assert {("Patient", "p1"), ("Observation", "w1"), ("Observation", "bp1"),
            ("Encounter", "e1"), ("Organization", "org1"), ("Practitioner", "dr1")} <= found
    assert ("Patient", "p2") not in found and ("Observation", "w3") not in found
    included = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]
                if e["search"]["mode"] == "include"}
    assert included == {("Organization", "org1"), ("Practitioner", "dr1")}  # not p1, e1...
    only = body(call(data, "GET", "Patient/p1/$everything?_type=Encounter"))
    assert {e["resource"]["id"] for e in only["entry"] if e["search"]["mode"] == "match"} == {
        "e1"}
    paged = body(call(data, "GET", "Patient/p1/$everything?_count=2"))
    assert any(link["relation"] == "next" for link in paged["link"])
    assert "total" not in paged  # counting is skipped unless asked for...
    counted = body(call(data, "GET", "Patient/p1/$everything?_count=2&_total=accurate"))
    assert counted["total"] == sum(e["search"]["mode"] == "match" for e in bundle["entry"])
    assert bundle["total"] == counted["total"]  # ...or free (one page holds everything)
    later = body(call(data, "GET", "Patient/p1/$everything?_since=2999-01-01"))
    assert not [e for e in later.get("entry", []) if e["search"]["mode"] == "match"]


def test_every_returned_bundle_is_valid_fhir(data: FhirService) -> None:
    from hygeia.fhir.validation import validate

    responses = [
        body(call(data, "GET", "Patient?_summary=count")),  # no entries at all
        body(call(data, "GET", "Observation?_id=w1&_include=Observation:subject")),
        body(call(data, "GET", "Patient?shoe-size=1")),  # with an OperationOutcome entry
        body(call(data, "GET", "Patient/p1/_history")),
        body(call(data, "GET", "Patient/p1/$everything")),
        body(call(data, "POST", "", {"resourceType": "Bundle", "type": "batch"})),
    ]
    for bundle in responses:
        assert validate(bundle) == [], bundle
