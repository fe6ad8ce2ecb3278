"""Hand-written expected rows for representative resources."""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.extract import extract_index, extract_parameter, invalidate
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry, default_registry
from hygeia.fhir.search.rows import MAX_TIME, IndexRows

from .support import all_rows, only

DAY = 86_400_000_000
SECOND = 1_000_000
JAN_2020 = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "gender": "female",
    "identifier": [
        {
            "system": "urn:mrn",
            "value": "12345",
            "type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Medical Record"},
        }
    ],
    "name": [{"family": "Ménard", "given": ["Zoë", "Anne"], "prefix": ["Dr."]}],
    "telecom": [
        {"system": "phone", "value": "555-0100"},
        {"system": "email", "value": "zoe@example.org"},
    ],
    "birthDate": "1980-02",
    "address": [
        {"line": ["1 Rue  de la Paix"], "city": "Paris", "postalCode": "75002", "country": "FR"}
    ],
    "generalPractitioner": [{"reference": "Practitioner/dr1"}],
    "managingOrganization": {"reference": "Organization/org1"},
}


def test_patient() -> None:
    rows = extract_index(PATIENT, complete=True)
    assert set(rows.strings) == {
        ("address", "1 rue de la paix", "1 Rue  de la Paix"),
        ("address", "paris", "Paris"),
        ("address", "75002", "75002"),
        ("address", "fr", "FR"),
        ("address-city", "paris", "Paris"),
        ("address-postalcode", "75002", "75002"),
        ("address-country", "fr", "FR"),
        ("family", "menard", "Ménard"),
        ("given", "zoe", "Zoë"),
        ("given", "anne", "Anne"),
        ("name", "menard", "Ménard"),
        ("name", "zoe", "Zoë"),
        ("name", "anne", "Anne"),
        ("name", "dr.", "Dr."),
        # phonetic is Patient.name in R4, so every part of the name (no phonetic algorithm)
        ("phonetic", "menard", "Ménard"),
        ("phonetic", "zoe", "Zoë"),
        ("phonetic", "anne", "Anne"),
        ("phonetic", "dr.", "Dr."),
    }
    assert set(rows.tokens) == {
        ("_id", None, "p1"),
        ("active", None, "true"),
        ("gender", None, "female"),
        ("identifier", "urn:mrn", "12345"),
        ("identifier:of-type", V2_0203, "MR|12345"),
        ("phone", None, "555-0100"),
        ("email", None, "zoe@example.org"),
        ("telecom", None, "555-0100"),
        ("telecom", None, "zoe@example.org"),
        ("deceased", None, "false"),
    }
    assert rows.token_texts == [("identifier", "medical record")]
    assert set(rows.references) == {
        ("general-practitioner", "Practitioner", "dr1", None, None),
        ("organization", "Organization", "org1", None, None),
    }
    feb_1980 = 318_211_200_000_000
    assert rows.dates == [("birthdate", feb_1980, feb_1980 + 29 * DAY)]
    assert rows.numbers == rows.quantities == rows.uris == rows.composites == []


def test_deceased_presence_test() -> None:
    alive = extract_index({"resourceType": "Patient", "deceasedBoolean": False})
    dead = extract_index({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"})
    assert only(alive.tokens, "deceased") == {("deceased", None, "false")}
    assert only(dead.tokens, "deceased") == {("deceased", None, "true")}
    assert dead.dates == [("death-date", JAN_2020, JAN_2020 + DAY)]


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}],
        "text": "BP",
    },
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2020-01-01T00:00:00Z",
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 80.5, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
        {"code": {"coding": [{"system": LOINC, "code": "9999-9"}]}},
    ],
}


def test_observation_tokens_references_and_dates() -> None:
    rows = extract_index(OBSERVATION, complete=True)
    assert only(rows.tokens, "code", "category", "status") == {
        ("code", LOINC, "85354-9"),
        ("status", None, "final"),
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs"),
    }
    assert only(rows.token_texts, "code") == {("code", "blood pressure"), ("code", "bp")}
    assert only(rows.tokens, "component-code") == {
        ("component-code", LOINC, "8480-6"),
        ("component-code", LOINC, "8462-4"),
        ("component-code", LOINC, "9999-9"),
    }
    assert set(rows.references) == {
        ("subject", "Patient", "p1", None, None),
        ("patient", "Patient", "p1", None, None),
    }
    assert rows.dates == [("date", JAN_2020, JAN_2020 + SECOND)]
    assert set(rows.quantities) == {
        ("component-value-quantity", 120.0, 120.0, UCUM, "mm[Hg]", "mmHg"),
        ("component-value-quantity", 80.5, 80.5, UCUM, "mm[Hg]", "mmHg"),
        ("combo-value-quantity", 120.0, 120.0, UCUM, "mm[Hg]", "mmHg"),
        ("combo-value-quantity", 80.5, 80.5, UCUM, "mm[Hg]", "mmHg"),
    }


def test_observation_composites_group_by_component() -> None:
    rows = extract_index(OBSERVATION, complete=True)
    systolic, diastolic = (LOINC, "8480-6"), (LOINC, "8462-4")
    assert only(rows.composites, "component-code-value-quantity") == {
        ("component-code-value-quantity", 0, 0, systolic),
        ("component-code-value-quantity", 0, 1, (120.0, 120.0, UCUM, "mm[Hg]", "mmHg")),
        ("component-code-value-quantity", 1, 0, diastolic),
        ("component-code-value-quantity", 1, 1, (80.5, 80.5, UCUM, "mm[Hg]", "mmHg")),
    }
    # combo: group 0 is the Observation itself (no value: no rows), 1.. its components
    assert only(rows.composites, "combo-code-value-quantity") == {
        ("combo-code-value-quantity", 1, 0, systolic),
        ("combo-code-value-quantity", 1, 1, (120.0, 120.0, UCUM, "mm[Hg]", "mmHg")),
        ("combo-code-value-quantity", 2, 0, diastolic),
        ("combo-code-value-quantity", 2, 1, (80.5, 80.5, UCUM, "mm[Hg]", "mmHg")),
    }
    # groups without a value are incomplete, so they are not written at all
    assert not only(rows.composites, "code-value-quantity", "component-code-value-concept")


def test_observation_values_and_period() -> None:
    quantity = extract_index(
        {
            "resourceType": "Observation",
            "code": {"coding": [{"system": LOINC, "code": "8302-2"}]},
            "valueQuantity": {"value": 181.2, "code": "cm", "system": UCUM},
        },
        complete=True,
    )
    assert set(quantity.quantities) == {
        ("value-quantity", 181.2, 181.2, UCUM, "cm", None),
        ("combo-value-quantity", 181.2, 181.2, UCUM, "cm", None),
    }
    assert set(quantity.composites) == {
        ("code-value-quantity", 0, 0, (LOINC, "8302-2")),
        ("code-value-quantity", 0, 1, (181.2, 181.2, UCUM, "cm", None)),
        ("combo-code-value-quantity", 0, 0, (LOINC, "8302-2")),
        ("combo-code-value-quantity", 0, 1, (181.2, 181.2, UCUM, "cm", None)),
    }
    concept = extract_index(
        {
            "resourceType": "Observation",
            "valueCodeableConcept": {
                "coding": [{"system": "http://snomed.info/sct", "code": "373066001"}],
                "text": "Yes",
            },
            "effectivePeriod": {"start": "2020-01-01", "end": "2020-01-02"},
        }
    )
    assert only(concept.tokens, "value-concept") == {
        ("value-concept", "http://snomed.info/sct", "373066001")
    }
    assert only(concept.token_texts, "value-concept") == {("value-concept", "yes")}
    assert concept.dates == [("date", JAN_2020, JAN_2020 + 2 * DAY)]


def test_where_resolve_is_keeps_only_that_target_type() -> None:
    rows = extract_index({"resourceType": "Observation", "subject": {"reference": "Group/g1"}})
    assert rows.references == [("subject", "Group", "g1", None, None)]
    logical = extract_index(
        {
            "resourceType": "Observation",
            "subject": {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "12345"}},
        }
    )
    assert logical.references == []
    assert set(logical.tokens) == {
        ("subject:identifier", "urn:mrn", "12345"),
        ("patient:identifier", "urn:mrn", "12345"),
    }


def test_reference_forms() -> None:
    rows = extract_index(
        {
            "resourceType": "Observation",
            "subject": {"reference": "http://other.org/fhir/Patient/p9/_history/3"},
            "performer": [
                {"reference": "#contained"},
                {"reference": "urn:uuid:1f2e", "type": "Practitioner"},
                {"reference": "Practitioner/dr1/_history/2"},
                {"display": "no reference"},
            ],
        },
        complete=True,
    )
    assert set(rows.references) == {
        ("subject", "Patient", "p9", "http://other.org/fhir/Patient/p9", "3"),
        ("patient", "Patient", "p9", "http://other.org/fhir/Patient/p9", "3"),
        ("performer", "Practitioner", None, "urn:uuid:1f2e", None),
        ("performer", "Practitioner", "dr1", None, "2"),
    }


def test_canonical_reference_with_version() -> None:
    rows = extract_index(
        {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": "http://x.org/Questionnaire/q1|2.0",
        }
    )
    assert rows.references == [
        ("questionnaire", None, None, "http://x.org/Questionnaire/q1", "2.0")
    ]


def test_encounter_period_and_class() -> None:
    rows = extract_index(
        {
            "resourceType": "Encounter",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "period": {"start": "2020-01-01T00:00:00Z"},
            "length": {"value": 15, "unit": "min", "system": UCUM, "code": "min"},
        }
    )
    assert only(rows.tokens, "class") == {
        ("class", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB")
    }
    assert rows.token_texts == [("class", "ambulatory")]
    assert rows.dates == [("date", JAN_2020, MAX_TIME)]
    assert rows.quantities == [("length", 15.0, 15.0, UCUM, "min", "min")]


def test_condition_onset_and_abatement() -> None:
    rows = extract_index(
        {
            "resourceType": "Condition",
            "onsetDateTime": "2020-01-01",
            "abatementString": "in remission",
            "recordedDate": "2020-01-02",
        }
    )
    assert set(rows.dates) == {
        ("onset-date", JAN_2020, JAN_2020 + DAY),
        ("recorded-date", JAN_2020 + DAY, JAN_2020 + 2 * DAY),
    }
    assert rows.strings == [("abatement-string", "in remission", "in remission")]
    aged = extract_index(
        {
            "resourceType": "Condition",
            "onsetAge": {"value": 40, "system": UCUM, "code": "a", "unit": "years"},
            "abatementPeriod": {"end": "2020-01-01"},
        }
    )
    assert aged.quantities == [("onset-age", 40.0, 40.0, UCUM, "a", "years")]
    assert aged.dates[0][0] == "abatement-date" and aged.dates[0][2] == JAN_2020 + DAY


def test_medication_request_choice() -> None:
    concept = extract_index(
        {
            "resourceType": "MedicationRequest",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}
                ]
            },
            "subject": {"reference": "Patient/p1"},
            "authoredOn": "2020-01-01",
        }
    )
    assert only(concept.tokens, "code") == {
        ("code", "http://www.nlm.nih.gov/research/umls/rxnorm", "314076")
    }
    assert only(concept.references, "medication") == set()
    reference = extract_index(
        {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/m1"}}
    )
    assert reference.references == [("medication", "Medication", "m1", None, None)]
    assert only(reference.tokens, "code") == set()


def test_money() -> None:
    rows = extract_index(
        {"resourceType": "Invoice", "totalNet": {"value": 129.16, "currency": "USD"}}
    )
    assert rows.quantities == [("totalnet", 129.16, 129.16, "urn:iso:std:iso:4217", "USD", None)]


def test_claim_and_explanation_of_benefit_skip_contained_references() -> None:
    claim = extract_index(
        {
            "resourceType": "Claim",
            "use": "claim",
            "patient": {"reference": "Patient/p1"},
            "created": "2020-01-01",
            "provider": {"reference": "Organization/o1"},
            "total": {"value": 10, "currency": "USD"},
        }
    )
    assert set(claim.references) == {
        ("patient", "Patient", "p1", None, None),
        ("provider", "Organization", "o1", None, None),
    }
    assert only(claim.tokens, "use") == {("use", None, "claim")}
    eob = extract_index(
        {
            "resourceType": "ExplanationOfBenefit",
            "contained": [
                {
                    "resourceType": "ServiceRequest",
                    "id": "referral",
                    "subject": {"reference": "Patient/p1"},
                }
            ],
            "patient": {"reference": "Patient/p1"},
            "referral": {"reference": "#referral"},
            "insurance": [{"focal": True, "coverage": {"reference": "#coverage"}}],
        }
    )
    assert eob.references == [("patient", "Patient", "p1", None, None)]


def test_practitioner() -> None:
    rows = extract_index(
        {
            "resourceType": "Practitioner",
            "name": [{"family": "Ortiz", "given": ["Otis"]}],
            "telecom": [{"system": "email", "value": "o@example.com"}],
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999889"}],
        }
    )
    assert only(rows.strings, "family", "given") == {
        ("family", "ortiz", "Ortiz"),
        ("given", "otis", "Otis"),
    }
    assert only(rows.tokens, "email", "phone", "identifier") == {
        ("email", None, "o@example.com"),
        ("identifier", "http://hl7.org/fhir/sid/us-npi", "9999999889"),
    }


def test_resource_level_parameters() -> None:
    rows = extract_index(
        {
            "resourceType": "Basic",
            "id": "b1",
            "meta": {
                "lastUpdated": "2020-01-01T00:00:00.000Z",
                "source": "http://src.org#req1",
                "profile": ["http://x.org/StructureDefinition/p|1.0", "http://x.org/sd/q"],
                "tag": [{"system": "urn:tags", "code": "t1", "display": "Tag One"}],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
            },
        },
        complete=True,
    )
    assert set(rows.tokens) == {
        ("_id", None, "b1"),
        ("_tag", "urn:tags", "t1"),
        ("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R"),
    }
    assert rows.token_texts == [("_tag", "tag one")]
    assert rows.dates == [("_lastUpdated", JAN_2020, JAN_2020 + 1000)]
    assert set(rows.uris) == {
        ("_source", "http://src.org#req1"),
        ("_profile", "http://x.org/StructureDefinition/p|1.0"),
        ("_profile", "http://x.org/StructureDefinition/p"),
        ("_profile", "http://x.org/sd/q"),
    }


def test_bundle_first_entry_resource() -> None:
    rows = extract_index(
        {
            "resourceType": "Bundle",
            "type": "document",
            "entry": [
                {"resource": {"resourceType": "Composition", "id": "c1"}},
                {"resource": {"resourceType": "Patient", "id": "p1"}},
            ],
        }
    )
    assert only(rows.references, "composition") == {
        ("composition", "Composition", "c1", None, None)
    }


def test_molecular_sequence_composite_reads_the_resource_root() -> None:
    rows = extract_index(
        {
            "resourceType": "MolecularSequence",
            "referenceSeq": {"chromosome": {"coding": [{"system": "http://x/chr", "code": "1"}]}},
            "variant": [{"start": 10, "end": 20}, {"start": 30}],
        }
    )
    assert only(rows.composites, "chromosome-variant-coordinate") == {
        ("chromosome-variant-coordinate", 0, 0, ("http://x/chr", "1")),
        ("chromosome-variant-coordinate", 0, 1, (10.0, 10.0)),
        ("chromosome-variant-coordinate", 0, 2, (20.0, 20.0)),
    }


def test_duplicates_are_removed() -> None:
    rows = extract_index(
        {"resourceType": "Patient", "name": [{"family": "Doe"}, {"family": "Doe"}]}
    )
    assert only(rows.strings, "family") == {("family", "doe", "Doe")}
    assert len(rows.strings) == len(set(rows.strings))


def test_unknown_types_and_non_objects_give_no_rows() -> None:
    empty = all_rows(IndexRows())
    assert all_rows(extract_index({"resourceType": "Nope", "id": "x"})) == empty
    assert all_rows(extract_index({"id": "x"})) == empty
    assert all_rows(extract_index([1, 2])) == empty  # type: ignore[arg-type]


def test_extract_parameter_gives_one_parameters_rows() -> None:
    param = default_registry().get("Patient", "given")
    assert param is not None
    rows = extract_parameter(PATIENT, param)
    assert set(rows.strings) == {("given", "zoe", "Zoë"), ("given", "anne", "Anne")}
    assert rows.tokens == []


def test_custom_parameters_added_later_are_picked_up() -> None:
    registry = SearchRegistry()
    for param in default_registry().for_type("Patient").values():
        registry.add(param)
    resource = {
        "resourceType": "Patient",
        "extension": [{"url": "http://x.org/eye-colour", "valueCode": "brown"}],
    }
    assert only(extract_index(resource, registry).tokens, "eye-colour") == set()
    registry.add(
        SearchParameter(
            url="http://x.org/SearchParameter/eye-colour",
            code="eye-colour",
            base=("Patient",),
            type="token",
            expression="Patient.extension('http://x.org/eye-colour').value",
        )
    )
    assert only(extract_index(resource, registry).tokens, "eye-colour") == {
        ("eye-colour", None, "brown")
    }
    invalidate()
    assert only(extract_index(resource, registry).tokens, "eye-colour") == {
        ("eye-colour", None, "brown")
    }
