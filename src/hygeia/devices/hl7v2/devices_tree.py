"""The device containment tree of a PCD-01 message as Device and DeviceMetric resources.

IEEE 11073 models a device as MDS (the medical device system: the monitor) >
VMD (a virtual medical device: a module, e.g. the NIBP module) > Channel > Metric.
PCD-01 sends this tree in OBX-4 as ``MDS.VMD.CHANNEL.METRIC`` ("1.2.1.3"); rows with
metric 0 describe a device level rather than a measurement (``1.0.0.0`` the MDS,
``1.2.0.0`` a VMD, ``1.2.1.0`` a channel), with the MDS's EUI-64 in OBX-18.

Here the MDS is a Device identified by its EUI-64 (else by sender and MDS number);
each VMD and channel is a Device whose ``parent`` is the level above; each metric
is a DeviceMetric whose ``source`` is the MDS and ``parent`` the channel. Ids are
derived from the identifiers, so the same monitor is the same Device in every
message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hygeia.devices.hl7v2.identity import (
    DEVICE_SYSTEM,
    EUI64_SYSTEM,
    identifier,
    stable_id,
)
from hygeia.devices.hl7v2.mdc import MDC
from hygeia.devices.hl7v2.units import UCUM, Unit


@dataclass(frozen=True, slots=True)
class Containment:
    """OBX-4 read as MDS.VMD.CHANNEL.METRIC (missing parts are 0)."""

    mds: int
    vmd: int
    channel: int
    metric: int

    @property
    def is_device_level(self) -> bool:
        return self.metric == 0

    def __str__(self) -> str:
        return f"{self.mds}.{self.vmd}.{self.channel}.{self.metric}"


@lru_cache(maxsize=1024)  # read several times for each OBX; monitors repeat them
def containment(sub_id: str) -> Containment | None:
    """OBX-4 as a containment path, or None when it is not one (``"1.2.1.3"``)."""
    pieces = sub_id.split(".")
    if not 1 <= len(pieces) <= 4 or not all(p.isdigit() and len(p) <= 9 for p in pieces):
        return None
    numbers = [int(p) for p in pieces] + [0] * (4 - len(pieces))
    return Containment(*numbers)


@dataclass(slots=True)
class DeviceTree:
    """The device levels of one message, built up as its OBX rows are read."""

    sender: str  # "APP|FACILITY"
    eui64: dict[int, str]  # MDS number -> EUI-64
    types: dict[str, dict[str, Any]]  # "1.2.0.0" -> the MDC type of that device level
    resources: dict[str, dict[str, Any]]  # "Type/id" -> resource
    # MDS number -> its Device's reference, once kept: every metric row of a message
    # names its MDS, and building its key again per row was a tenth of mapping one
    _mds_kept: dict[int, str] = field(default_factory=dict)

    def describe(self, level: Containment, kind: dict[str, Any]) -> None:
        """Note the MDC type of a device level (a row whose metric is 0 and that has
        no value); the levels kept since are built again with it."""
        self.types[str(level)] = kind
        self._mds_kept.clear()

    def mds_key(self, mds: int) -> str:
        eui = self.eui64.get(mds)
        return eui if eui else f"{self.sender}/{mds}"

    def mds(self, mds: int) -> str:
        """The reference of MDS ``mds``'s Device (created on first use)."""
        kept = self._mds_kept.get(mds)
        if kept is not None:
            return kept
        eui = self.eui64.get(mds)
        ident = identifier(EUI64_SYSTEM, eui) if eui else \
            identifier(DEVICE_SYSTEM, self.mds_key(mds))
        kept = self._mds_kept[mds] = self._device(f"{mds}.0.0.0", ident, None)
        return kept

    def channel(self, where: Containment) -> str:
        """The reference of the channel Device holding a metric (and its VMD's)."""
        vmd = self._device(f"{where.mds}.{where.vmd}.0.0", identifier(
            DEVICE_SYSTEM, f"{self.mds_key(where.mds)}/{where.vmd}"), self.mds(where.mds))
        return self._device(f"{where.mds}.{where.vmd}.{where.channel}.0", identifier(
            DEVICE_SYSTEM, f"{self.mds_key(where.mds)}/{where.vmd}.{where.channel}"), vmd)

    def metric(self, where: Containment, code: dict[str, Any], unit: Unit | None) -> str:
        """The reference of the DeviceMetric of one measurement; it, its channel, VMD and
        MDS are kept, as built for the same inputs before (:func:`_built`) and found
        with one look-up of everything they are made of."""
        unit_code = unit.code if unit is not None else ""
        types = self.types
        memo = (self.sender, self.eui64.get(where.mds), where, tuple(code.items()), unit_code,
                _items(types.get(f"{where.mds}.0.0.0")),
                _items(types.get(f"{where.mds}.{where.vmd}.0.0")),
                _items(types.get(f"{where.mds}.{where.vmd}.{where.channel}.0")))
        levels = _LEVELS.get(memo)
        if levels is None:
            levels = self._metric_levels(where, code, unit_code)
            if len(_LEVELS) >= MAX_BUILT:
                _LEVELS.clear()
            _LEVELS[memo] = levels
        reference = ""
        for resource in levels:  # MDS, VMD, channel, metric: the order they were built in
            reference = self._keep(resource)
        return reference

    def _metric_levels(self, where: Containment, code: dict[str, Any],
                       unit_code: str) -> tuple[dict[str, Any], ...]:
        """The MDS, VMD, channel and metric of one measurement, built."""
        key = f"{self.mds_key(where.mds)}/{where.vmd}.{where.channel}.{where.metric}/" \
              f"{code.get('code', '')}"
        source, parent = self.mds(where.mds), self.channel(where)
        metric = _built(("DeviceMetric", key, tuple(code.items()), unit_code, source, parent),
                        lambda: _metric(key, code, unit_code, source, parent))
        channel = self.resources[parent]
        vmd = self.resources[channel["parent"]["reference"]]
        return self.resources[source], vmd, channel, metric

    def _device(self, level: str, ident: dict[str, Any], parent: str | None) -> str:
        kind = self.types.get(level)
        return self._keep(_built(("Device", ident["system"], ident["value"],
                                  tuple(kind.items()) if kind is not None else None, parent),
                                 lambda: _device(ident, kind, parent)))

    def _keep(self, resource: dict[str, Any]) -> str:
        reference = f"{resource['resourceType']}/{resource['id']}"
        self.resources[reference] = resource
        return reference


MAX_BUILT = 20_000  # device levels kept built (all are forgotten beyond)
_BUILT: dict[tuple[Any, ...], dict[str, Any]] = {}
_LEVELS: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}  # a metric's, by its inputs


def _items(kind: dict[str, Any] | None) -> tuple[tuple[str, Any], ...] | None:
    return tuple(kind.items()) if kind is not None else None


def _built(key: tuple[Any, ...], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The resource ``build`` makes for ``key`` (everything it is made of), made once: a
    monitor names the same 17 device levels in every message, and the very same dict
    each time lets :func:`~.writing.upsert_all` know it unchanged without comparing it
    (:meth:`~.writing.Remembered.unchanged`). Shared between messages and threads, so
    never changed: the writer stores a copy of its top level."""
    found = _BUILT.get(key)
    if found is None:
        if len(_BUILT) >= MAX_BUILT:
            _BUILT.clear()
            _LEVELS.clear()  # what it holds is rebuilt from _BUILT's new objects
        found = _BUILT[key] = build()
    return found


def _device(ident: dict[str, Any], kind: dict[str, Any] | None,
            parent: str | None) -> dict[str, Any]:
    device: dict[str, Any] = {"resourceType": "Device",
                              "id": stable_id("dev", f"{ident['system']}|{ident['value']}"),
                              "identifier": [ident], "status": "active"}
    if kind is not None:
        device["type"] = {"coding": [dict(kind)]}
    if parent is not None:
        device["parent"] = {"reference": parent}
    return device


def _metric(key: str, code: dict[str, Any], unit_code: str, source: str,
            parent: str) -> dict[str, Any]:
    metric: dict[str, Any] = {
        "resourceType": "DeviceMetric", "id": stable_id("dm", key),
        "identifier": [identifier(DEVICE_SYSTEM, key)],
        "type": {"coding": [dict(code)]},
        "source": {"reference": source},
        "parent": {"reference": parent},
        "category": "measurement",
    }
    if unit_code:
        metric["unit"] = {"coding": [{"system": UCUM, "code": unit_code}]}
    return metric


def device_type(code: str, refid: str) -> dict[str, Any]:
    """The MDC coding of a device level's OBX-3 (``69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS``)."""
    coding = {"system": MDC, "code": code}
    if refid:
        coding["display"] = refid
    return coding
