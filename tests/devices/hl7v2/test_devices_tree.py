"""Device levels are built once for the same inputs (hygeia.devices.hl7v2.devices_tree):
the very same objects, so the writer knows them unchanged without comparing them."""

from __future__ import annotations

from hygeia.devices.hl7v2.devices_tree import DeviceTree, containment, device_type
from hygeia.devices.hl7v2.mdc import MDC
from hygeia.devices.hl7v2.units import Unit

HEART = {"system": MDC, "code": "147842", "display": "MDC_ECG_HEART_RATE"}
PER_MINUTE = Unit("/min", "/min")


def tree(types: dict[str, dict[str, str]] | None = None) -> DeviceTree:
    built = DeviceTree("MON|WARD", {1: "00AA11BB22CC33EE"}, {}, {})
    built.types.update(types or {})
    where = containment("1.1.1.1")
    assert where is not None
    built.metric(where, dict(HEART), PER_MINUTE)
    return built


def test_the_same_measurement_names_the_very_same_resources() -> None:
    first, second = tree(), tree()
    assert list(first.resources) == list(second.resources)  # MDS, VMD, channel, metric
    assert [r["resourceType"] for r in first.resources.values()] == \
        ["Device", "Device", "Device", "DeviceMetric"]
    assert all(first.resources[ref] is second.resources[ref] for ref in first.resources)


def test_a_level_described_otherwise_is_another_resource() -> None:
    plain = tree()
    typed = tree({"1.0.0.0": device_type("69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS")})
    assert list(plain.resources) == list(typed.resources)  # the same ids
    mds = next(iter(plain.resources))
    assert "type" not in plain.resources[mds]
    assert typed.resources[mds]["type"]["coding"][0]["code"] == "69965"
    metric = list(plain.resources)[-1]
    assert plain.resources[metric] is typed.resources[metric]  # made of the same inputs
    assert plain.resources[metric]["unit"]["coding"][0]["code"] == "/min"


def test_an_mds_described_after_its_first_metric_is_kept_with_its_type() -> None:
    """The MDS reference is remembered per message; describing the MDS later builds
    it again with its type (a type row may follow the metric rows)."""
    built = DeviceTree("MON|WARD", {1: "00AA11BB22CC33EE"}, {}, {})
    reference = built.mds(1)
    assert "type" not in built.resources[reference]
    mds = containment("1.0.0.0")
    assert mds is not None
    built.describe(mds, device_type("69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS"))
    assert built.mds(1) == reference
    assert built.resources[reference]["type"]["coding"][0]["code"] == "69965"
