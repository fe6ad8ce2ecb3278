"""Server-side stamping helpers: ids."""

from __future__ import annotations

import uuid

from hygeia.fhir.resources import new_id


def test_new_ids_are_random_version_4_uuids_in_their_usual_text() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every variant digit (8, 9, a, b) and every hex digit elsewhere turn up
    assert {text[19] for text in ids} == set("89ab")
    assert set("".join(text.replace("-", "") for text in ids)) == set("0123456789abcdef")
