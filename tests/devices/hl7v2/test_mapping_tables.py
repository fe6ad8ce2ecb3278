"""The mapping tables against the standards' rules and against every fixture message."""

from __future__ import annotations

import tomllib
from pathlib import Path

import hl7
import pytest

from hygeia.devices.hl7v2.flags import (
    absent_reason,
    in_alarm,
    interpretations,
    observation_status,
    report_status,
)
from hygeia.devices.hl7v2.hl7time import fhir_datetime
from hygeia.devices.hl7v2.identity import location_value, token
from hygeia.devices.hl7v2.mdc import LOINC, MDC, is_private, term
from hygeia.devices.hl7v2.obx import read_obx
from hygeia.devices.hl7v2.segments import segments
from hygeia.devices.hl7v2.tables import table
from hygeia.devices.hl7v2.units import unit_of
from tests.devices.hl7v2.oru_helpers import FIXTURES, message_text

ROOT = Path(__file__).parent.parent.parent.parent
TABLES = ["mdc_loinc", "mdc_units", "mdc_private", "sentinels", "interpretation", "result_status"]
PCD_FIXTURES = sorted(p.name for p in FIXTURES.glob("oru_pcd01_*.hl7"))
VITAL_SIGNS = {"8867-4", "59408-5", "9279-1", "85354-9", "8480-6", "8462-4", "8478-0",
               "8310-5", "29463-7"}  # the FHIR vital-signs codes the issue names


@pytest.mark.parametrize("name", TABLES)
def test_each_table_says_what_it_maps_and_is_shipped(name: str) -> None:
    assert table(name)["_about"]
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["hygeia"]
    assert "devices/hl7v2/tables/*.json" in package_data


def test_every_vital_sign_has_its_loinc_code_and_a_display() -> None:
    mapped = {code for entry in table("mdc_loinc")["codes"].values() for code in entry["loinc"]}
    assert mapped >= VITAL_SIGNS
    assert mapped <= set(table("mdc_loinc")["loinc_display"])
    for code, entry in table("mdc_loinc")["codes"].items():
        assert entry["refid"].startswith("MDC_"), code
        assert not is_private(code), code
        panel = entry.get("component_of")
        assert panel is None or table("mdc_loinc")["codes"][panel]["panel"], code


def test_private_codes_are_in_the_private_range_and_mean_a_known_code() -> None:
    for vendor in table("mdc_private")["vendors"].values():
        for code, entry in vendor.items():
            assert is_private(code), code
            assert entry.get("standard") is None or entry["standard"] in table("mdc_loinc")[
                "codes"]


def test_table_0078_flags_map_to_themselves_in_the_v3_system() -> None:
    assert all(k == v for k, v in table("interpretation")["hl7_0078"].items())


@pytest.mark.parametrize("fixture", PCD_FIXTURES)
def test_every_pcd_fixture_row_maps_through_the_tables(fixture: str) -> None:
    message = hl7.parse(message_text(fixture))
    for index, segment in enumerate(segments(message, "OBX"), start=1):
        obx = read_obx(segment, index)
        assert obx.system == "MDC"
        meaning = term(obx.code, obx.text, "HYGEIA_DEMO_MONITOR")
        assert (meaning.codings[0]["system"], meaning.codings[0]["code"]) == (MDC, obx.code)
        if obx.value_type == "NM":
            unit = segment.extract_field(1, 6, 1, 1, 1)
            assert unit_of(unit, "", "MDC") is not None, unit
            loinc = {c["code"] for c in meaning.codings if c["system"] == LOINC}
            assert loinc & VITAL_SIGNS or meaning.private, obx.code
        assert observation_status(obx.status or "F") is not None
        _, unknown = interpretations(obx.flags)
        assert unknown == []


def test_the_alarm_fixture_flags() -> None:
    message = hl7.parse(message_text("oru_pcd01_alarm.hl7"))
    rows = [read_obx(s, i) for i, s in enumerate(segments(message, "OBX"), start=1)]
    assert in_alarm(rows[1].flags) and not in_alarm(rows[2].flags)
    assert absent_reason(rows[2].flags, rows[2].value) == "temp-unknown"
    assert absent_reason(rows[3].flags, rows[3].value) == "not-a-number"
    assert absent_reason([], "72") is None


def test_result_statuses() -> None:
    assert [observation_status(c) for c in "FCPRXDW"] == [
        "final", "corrected", "preliminary", "preliminary", "cancelled", "entered-in-error",
        "entered-in-error"]
    assert observation_status("Q") is None
    assert [report_status(c) for c in "FCPRX"] == ["final", "corrected", "preliminary",
                                                  "partial", "cancelled"]


@pytest.mark.parametrize(("hl7_time", "fhir"), [
    ("2024", "2024"), ("202403", "2024-03"), ("20240315", "2024-03-15"),
    ("202403151015+0100", "2024-03-15T10:15:00+01:00"),
    ("20240315101530.25-0500", "2024-03-15T10:15:30.25-05:00"),
    ("20240315101530", "2024-03-15T10:15:30+00:00"),
])
def test_times_keep_their_precision_and_offset(hl7_time: str, fhir: str) -> None:
    found = fhir_datetime(hl7_time)
    assert found is not None and found.value == fhir
    assert found.assumed_utc == (hl7_time == "20240315101530")


@pytest.mark.parametrize("bad", ["20240231", "2024031525", "2024-03-15", "20240315+2500", ""])
def test_impossible_times_are_not_times(bad: str) -> None:
    assert fhir_datetime(bad) is None


def test_bed_values_and_token_escaping() -> None:
    assert location_value("HOSP", "ICU", "", "3") == "HOSP/ICU//3"
    assert location_value("", "", "", "") == ""
    assert token("urn:x", "a|b,c$d\\e") == "urn:x|a\\|b\\,c\\$d\\\\e"


def test_a_term_is_made_once_per_code_text_and_sender() -> None:
    """A monitor names the same codes in every message: the same (never changed) term."""
    from hygeia.devices.hl7v2.mdc import term

    assert term("150456", "MDC_PULS_OXIM_SAT_O2", "MON") is \
        term("150456", "MDC_PULS_OXIM_SAT_O2", "MON")
    assert term("150456", "", "MON") is not term("150456", "MDC_PULS_OXIM_SAT_O2", "MON")
