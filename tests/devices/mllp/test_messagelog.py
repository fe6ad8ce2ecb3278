"""The message log's record: a valid MessageHeader that carries outcome, error and notes."""

from __future__ import annotations

from datetime import UTC, datetime

from hygeia.devices.mllp.acks import Failure
from hygeia.devices.mllp.messagelog import (
    Entry,
    message_header,
    raw_binary,
    record_id,
    response_identifier,
    unparsed_id,
)
from hygeia.fhir.validation import validate


def entry(**changes: object) -> Entry:
    values: dict[str, object] = {
        "id": record_id("MON|ICU", "MSG 1"), "raw": b"MSH|...",
        "received_at": datetime(2024, 3, 1, 8, tzinfo=UTC), "peer": "mllp://10.0.0.5:40000",
        "listener": "mllp://127.0.0.1:2575", "sender": "MON|ICU", "receiver": "HYGEIA|HOSP",
        "control_id": "MSG 1", "message_type": "ORU^R01", **changes}
    return Entry(**values)  # type: ignore[arg-type]


def test_the_id_depends_on_sender_and_control_id_only() -> None:
    assert record_id("MON|ICU", "1") == record_id("MON|ICU", "1")
    assert len({record_id("MON|ICU", "1"), record_id("MON|ICU2", "1"),
                record_id("MON|ICU", "2")}) == 3


def test_a_record_with_notes_and_an_error_is_a_valid_message_header() -> None:
    failure = Failure("OBX-3 has no code.", "101", "OBX^2^3")
    resource = message_header(entry(outcome="fatal-error", failure=failure,
                                    notes=["bed ICU/1 had no patient at 08:00"],
                                    written=["Observation/1"], acks=["MSH|...\rMSA|AE|MSG 1\r"]))
    assert validate(resource, "MessageHeader") == []
    [outcome] = resource["contained"]
    error, note = outcome["issue"]
    assert error["location"] == ["OBX^2^3"] and error["details"]["coding"][0]["code"] == "101"
    assert note == {"severity": "information", "code": "informational",
                    "diagnostics": "bed ICU/1 had no patient at 08:00"}
    assert resource["response"] == {"identifier": "MSG-1", "code": "fatal-error",
                                    "details": {"reference": "#outcome"}}
    assert [item["reference"] for item in resource["focus"]] == \
        [f"Binary/{resource['id']}", "Observation/1"]


def test_a_control_id_becomes_a_valid_id() -> None:
    assert response_identifier("MSG 1/2_x") == "MSG-1-2-x"
    assert response_identifier("") == "unknown"
    assert len(response_identifier("x" * 100)) == 64


def test_the_raw_message_is_a_valid_binary_whatever_its_bytes() -> None:
    """The log writes it unvalidated (messagelog.store): it must be valid by construction."""
    for raw in (b"MSH|^~\\&|A\r", bytes(range(256)), b"\x0b", "Gr\u00fc\u00dfe".encode("latin-1"),
                b"x" * 100_001):
        for id in (record_id("MON|ICU", raw.decode("latin-1")), unparsed_id(raw)):
            assert validate(raw_binary(entry(id=id, raw=raw)), "Binary") == []


def test_an_empty_block_is_not_a_valid_binary() -> None:
    """So the log validates it (and refuses to keep it) rather than store it unchecked."""
    assert validate(raw_binary(entry(raw=b"")), "Binary") != []
