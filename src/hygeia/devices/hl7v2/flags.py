"""OBX-8 abnormal flags, OBX-11 result status and absent values, into FHIR.

* HL7 table 0078 flags (``H``, ``LL``, ``A`` ...) become ``interpretation`` codings in
  the v3 ObservationInterpretation system.
* IHE PCD alarm flags (``PHY``/``TEC`` alarm type, ``PH``/``PM``/``PL``/``PN`` priority,
  ``SP``/``ST``/``SA`` source) and measurement-status flags (``invalid``, ``test-data``
  ...) become ``interpretation`` codings in Hygeia's own systems (below), so the alarm
  is searchable and the alerting service can act on it.
* PCD null flavors in OBX-8 (``NAV``, ``NAN`` ...), numeric sentinels in OBX-5 and
  the "no value" statuses become ``dataAbsentReason``.
"""

from __future__ import annotations

from typing import Any

from hygeia.devices.hl7v2.tables import table

INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PCD_ALARM = "urn:hygeia:hl7v2:pcd-alarm"
MEASUREMENT_STATUS = "urn:hygeia:hl7v2:measurement-status"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
ALARM_TYPES = {"PHY", "TEC"}


def interpretations(flags: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The interpretation concepts of OBX-8's repetitions, and the flags not known."""
    tables = table("interpretation")
    concepts: list[dict[str, Any]] = []
    unknown: list[str] = []
    for flag in flags:
        if flag in tables["hl7_0078"]:
            coding = {"system": INTERPRETATION, "code": tables["hl7_0078"][flag]}
        elif flag in tables["pcd_alarm"]:
            coding = {"system": PCD_ALARM, "code": flag, "display": tables["pcd_alarm"][flag]}
        elif flag in tables["measurement_status"]:
            coding = {"system": MEASUREMENT_STATUS, "code": flag,
                      "display": tables["measurement_status"][flag]}
        elif flag in table("sentinels")["null_flavors"]:
            continue  # a reason the value is absent, not an interpretation
        else:
            unknown.append(flag)
            continue
        concepts.append({"coding": [coding], "text": flag})
    return concepts, unknown


def in_alarm(flags: list[str]) -> bool:
    """Whether OBX-8 says the device raised an alarm on this value."""
    return bool(ALARM_TYPES.intersection(flags)) or "msmt-state-in-alarm" in flags


def absent_reason(flags: list[str], value: str) -> str | None:
    """The data-absent-reason code when OBX-8 or a sentinel value says there is no value."""
    sentinels = table("sentinels")
    for flag in flags:
        reason = sentinels["null_flavors"].get(flag) or sentinels["measurement_status"].get(flag)
        if reason:
            return str(reason)
    sentinel = sentinels["numeric"].get(value.strip())
    return None if sentinel is None else str(sentinel)


def absent_concept(reason: str) -> dict[str, Any]:
    return {"coding": [{"system": ABSENT, "code": reason}], "text": reason}


def observation_status(code: str) -> str | None:
    """FHIR Observation.status for OBX-11 (None when the code is not in table 0085)."""
    found = table("result_status")["observation"].get(code)
    return None if found is None else str(found)


def report_status(code: str) -> str | None:
    """FHIR DiagnosticReport.status for OBR-25 (None when not in table 0123)."""
    found = table("result_status")["report"].get(code)
    return None if found is None else str(found)
