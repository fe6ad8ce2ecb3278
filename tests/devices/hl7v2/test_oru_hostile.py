"""Hostile and broken ORU^R01 input: every outcome is Handled or Rejected, never a crash."""

from __future__ import annotations

import pytest

from hygeia.devices.hl7v2.handling import Handled, Rejected
from hygeia.devices.hl7v2.oru import HANDLES
from hygeia.server import FhirService
from tests.devices.hl7v2.oru_helpers import FIXTURES, message_text, received, search

FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("oru_*.hl7"))


class RollBack(Exception):
    """Raised to leave a transaction without committing what the handler wrote."""


def outcome(service: FhirService, raw: str) -> Handled | Rejected:
    """What the handler made of ``raw``, in a transaction that is then rolled back."""
    try:
        with service.transaction() as session:
            try:
                handled = HANDLES["ORU^R01"](received(raw), session)
            except Rejected as rejected:
                return rejected
            raise RollBack
    except RollBack:
        return handled


def blanked(raw: str) -> list[str]:
    """``raw`` with each field, then each component, of each segment after MSH emptied
    or replaced by text in turn."""
    lines = raw.rstrip("\r").split("\r")
    variants = []
    for row, line in enumerate(lines[1:], start=1):
        fields = line.split("|")
        for position in range(1, len(fields)):
            components = fields[position].split("^")
            for index in range(len(components) if len(components) > 1 else 0):
                for junk in ("", "x"):
                    changed = "^".join([*components[:index], junk, *components[index + 1:]])
                    variants.append(_with(lines, row, fields, position, changed))
            if fields[position]:
                variants.append(_with(lines, row, fields, position, ""))
                variants.append(_with(lines, row, fields, position, "x~"))
    return variants


def _with(lines: list[str], row: int, fields: list[str], position: int, value: str) -> str:
    changed = "|".join([*fields[:position], value, *fields[position + 1:]])
    return "\r".join([*lines[:row], changed, *lines[row + 1:]])


@pytest.mark.parametrize("repository", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_any_field_or_component_broken_is_handled_or_rejected_with_a_location(
        service: FhirService, fixture: str) -> None:
    kinds = set()
    for raw in blanked(message_text(fixture)):
        result = outcome(service, raw)
        kinds.add(type(result))
        if isinstance(result, Rejected):
            assert result.location and result.text and result.hl7_code in {
                "101", "102", "103", "207"}, raw
    assert kinds == {Handled, Rejected}
    assert not search(service, "Observation")


@pytest.mark.parametrize("repository", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("find", "replace", "location"), [
    ("MRN-2002^^^HOSP^MR", "~".join(["X^^^HOSP^MR"] * 21), "PID^1^3"),
    ("||97|", "||" + "9" * 41 + "|", "OBX^1^5"),
    ("||97|", "||1e999999999|", "OBX^1^5"),
    ("Dupont^Marc", "Dupont\x01^Marc", "PID^1^3"),
])
def test_floods_and_giant_values_are_refused(service: FhirService, find: str, replace: str,
                                             location: str) -> None:
    raw = message_text("oru_lab_panel.hl7")
    assert find in raw
    result = outcome(service, raw.replace(find, replace, 1))
    assert isinstance(result, Rejected) and result.location == location, result


@pytest.mark.parametrize("repository", ["sqlite"], indirect=True)
def test_a_giant_identifier_is_handled_or_refused(service: FhirService) -> None:
    raw = message_text("oru_lab_panel.hl7").replace("MRN-2002", "M" * 5000, 1)
    result = outcome(service, raw)
    assert isinstance(result, Handled | Rejected)


@pytest.mark.parametrize("repository", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("fixture", "prefix"), [("oru_pcd01_monitor.hl7", "OBX|2|"),
                                                  ("oru_lab_panel.hl7", "OBX|2|"),
                                                  ("oru_lab_panel.hl7", "OBR|")])
def test_a_segment_sent_twice_is_stored_once(service: FhirService, fixture: str,
                                             prefix: str) -> None:
    lines = message_text(fixture).rstrip("\r").split("\r")
    line = next(line for line in lines if line.startswith(prefix))
    again = [line.replace("|72|", "|73|")] if prefix == "OBX|2|" else lines[lines.index(line):]
    doubled = "\r".join([*lines, *again])
    result = outcome(service, doubled)
    assert isinstance(result, Handled), result
    assert len(result.written) == len(set(result.written))
