"""What a message became is written once (hygeia.devices.hl7v2.writing): a monitor's
unchanged device tree is neither written nor compared again, yet a device changed by
anyone else since is put back as the monitor describes it."""

from __future__ import annotations

from hygeia.devices.hl7v2.identity import EUI64_SYSTEM
from hygeia.devices.hl7v2.oru import oru_handler
from hygeia.devices.hl7v2.writing import Remembered
from hygeia.server import FhirRequest, FhirService
from tests.devices.hl7v2.oru_helpers import one, process, read, search

EUI = "00AA11BB22CC33DD"


def reading(number: int) -> str:
    """A PCD-01 ORU^R01 of two OBX rows from one monitor, ``number`` minutes past noon."""
    at = f"20260101{12 + number // 60:02d}{number % 60:02d}00+0000"
    return "\r".join([
        f"MSH|^~\\&|MON^{EUI}^EUI-64|WARD|HYGEIA|HOSP|{at}||ORU^R01^ORU_R01|W{number}|P|2.6"
        "|||NE|AL|||||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        "PID|||MRN-W^^^HOSP^MR||Doe^Wanda",
        f"OBR|1||W{number}|182777000^monitoring of patient^SCT|||{at}",
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||"
        f"{EUI}^EUI-64",
        f"OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{60 + number}|"
        f"264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{at}||||{EUI}^EUI-64",
        f"OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC"
        f"|||||R|||{at}||||{EUI}^EUI-64"]) + "\r"


def monitor(service: FhirService) -> dict[str, object]:
    return one(search(service, "Device", identifier=f"{EUI64_SYSTEM}|{EUI}"))


def test_an_unchanged_tree_is_known_from_the_version_it_was_compared_to(
        service: FhirService) -> None:
    remembered = Remembered()
    handler = oru_handler(None, remembered)
    first = process(service, reading(0), handler)
    assert len([r for r in first.written if r.startswith("Device/")]) == 5  # MDS, 2 VMD, 2 chan
    assert remembered.same == {}  # written, never compared yet
    second = process(service, reading(1), handler)
    tree = {r for r in first.written if r.startswith(("Device", "DeviceMetric"))}
    assert {f"{t}/{i}" for t, i in remembered.same} == tree  # found equal: remembered
    assert [r.split("/")[0] for r in second.written] == ["Observation"] * 2
    third = process(service, reading(2), handler)
    assert [r.split("/")[0] for r in third.written] == ["Observation"] * 2
    assert monitor(service)["meta"]["versionId"] == "1"  # type: ignore[index]


def test_a_device_changed_by_another_writer_is_put_back(service: FhirService) -> None:
    remembered = Remembered()
    handler = oru_handler(None, remembered)
    process(service, reading(0), handler)
    process(service, reading(1), handler)  # the tree is now known unchanged
    device = monitor(service)
    changed = {**device, "status": "inactive"}
    response = service.handle(FhirRequest("PUT", f"Device/{device['id']}", body=changed))
    assert response.status == 200, response.body_dict()
    third = process(service, reading(2), handler)
    assert f"Device/{device['id']}" in third.written
    stored = read(service, f"Device/{device['id']}")
    assert stored["status"] == "active" and stored["meta"]["versionId"] == "3"
    fourth = process(service, reading(3), handler)
    assert [r.split("/")[0] for r in fourth.written] == ["Observation"] * 2
