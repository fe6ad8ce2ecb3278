"""Every resource of the Synthea fixtures extracts, with the references search relies on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hygeia.fhir.search.extract import extract_index

from .support import only, stored_resources, synthea_files


@pytest.mark.parametrize("path", synthea_files(), ids=lambda path: path.name[:3])
def test_synthea_bundle_extracts(path: Path) -> None:
    resources = stored_resources(path)
    kinds: Counter[str] = Counter()
    for resource in resources:
        rows = extract_index(resource, complete=True)
        kinds[resource["resourceType"]] += 1
        assert ("_id", None, resource["id"]) in rows.tokens
        if resource["resourceType"] == "Observation":
            subject = resource["subject"]["reference"]
            kind, ident = subject.split("/")
            assert only(rows.references, "subject", "patient") == {
                ("subject", kind, ident, None, None),
                ("patient", kind, ident, None, None),
            }
            assert only(rows.tokens, "code")
            assert only(rows.dates, "date")
    assert kinds["Observation"] > 0 and kinds["Patient"] == 1


def test_urn_references_before_the_transaction_resolves_them() -> None:
    """As posted (urn:uuid subjects, no type): subject is indexed, patient cannot be told."""
    rows = extract_index(
        {
            "resourceType": "Observation",
            "subject": {"reference": "urn:uuid:6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"},
        }
    )
    assert rows.references == [
        ("subject", None, None, "urn:uuid:6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2", None)
    ]
