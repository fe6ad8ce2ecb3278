"""Device alarms become alerts: a reading a device flagged in alarm, or one outside the
device's own alarm limits, raises an alert through the core's alerting service; the
next reading of the same measurement within the limits clears it. A gateway whose
Device turns ``inactive`` (its MQTT status went ``offline``) raises a device-offline
alert for each patient using it or a device below it; ``active`` again clears them.
A gateway no patient uses raises none (the log says so): an alert needs a subject.

An :class:`EventConsumer` of the change feed does it, after commit, so the MLLP and
MQTT paths acknowledge as fast as they store and an alarm survives a crash between
commit and alert (the consumer's cursor resumes). One alert per device, measurement
and patient while the condition persists: the alerting service deduplicates by key.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import orjson

from hygeia.devices.hl7v2.flags import MEASUREMENT_STATUS, PCD_ALARM
from hygeia.devices.mqtt.storing import GATEWAY_SYSTEM
from hygeia.devices.registry import children, patient_of
from hygeia.server.alerts import Alert
from hygeia.server.extensions import EventContext, PillarHost
from hygeia.store import ChangeBatch, Session

log = logging.getLogger("hygeia.devices.alarms")

ALARM_LIMITS = "alarm limits"  # the referenceRange text prefix a device's limits carry
IN_ALARM_STATUS = "msmt-state-in-alarm"
ALARM_CODE = {"coding": [{"system": "urn:hygeia:codesystem:device-alert",
                          "code": "device-alarm", "display": "Device alarm"}]}
OFFLINE_CODE = {"coding": [{"system": "urn:hygeia:codesystem:device-alert",
                            "code": "device-offline", "display": "Device offline"}]}


def alarm_of(observation: dict[str, Any]) -> str | None:
    """Why ``observation`` is in alarm, in words; None when it is not."""
    for concept in observation.get("interpretation") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == PCD_ALARM:
                return f"the device raised a {coding.get('display') or coding.get('code')}"
            if coding.get("system") == MEASUREMENT_STATUS and coding.get("code") == \
                    IN_ALARM_STATUS:
                return "the device reports the measurement in alarm"
    value = (observation.get("valueQuantity") or {}).get("value")
    if not isinstance(value, int | float):
        return None
    for limits in observation.get("referenceRange") or []:
        if not str(limits.get("text", "")).startswith(ALARM_LIMITS):
            continue
        low, high = (limits.get(end, {}).get("value") for end in ("low", "high"))
        if isinstance(low, int | float) and value < low:
            return f"{value} is below the device's alarm limit {low}"
        if isinstance(high, int | float) and value > high:
            return f"{value} is above the device's alarm limit {high}"
    return None


def alarm_key(observation: dict[str, Any]) -> str | None:
    """The condition's key: device, measurement and patient; None for a reading that is
    not a device's measurement of a patient."""
    device = (observation.get("device") or {}).get("reference")
    subject = (observation.get("subject") or {}).get("reference")
    codings = (observation.get("code") or {}).get("coding") or []
    if not device or not subject or not codings:
        return None
    code = f"{codings[0].get('system', '')}|{codings[0].get('code', '')}"
    return f"device-alarm|{device}|{code}|{subject}"


# what a batch's change does: gateway/raise/clear, the resource's id, its content, and
# (an Observation's) its alarm_key, worked out once: it was worked out three times for
# each Observation of a batch (py-spy of an MLLP run: a sixth of this consumer's samples)
Step = tuple[str, str, dict[str, Any], str | None]


class DeviceAlarms:
    """Raises and clears device-alarm alerts from the Observations committed."""

    name = "devices-alarms"
    types: Collection[str] | None = ("Observation", "Device")
    from_start = False  # alarms are about now: a new install does not replay history
    # woken by a commit, wait this long so a stream of monitor messages is read as one
    # batch: without it every group commit cost a feed read and a snapshot (8-14% less
    # CPU per Observation through MLLP with it); an alarm's alert waits that much longer
    gather_seconds = 0.05

    def __init__(self, host: PillarHost) -> None:
        self.host = host

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        """Read the batch in a snapshot; take the write lock only for what changes
        something. Nearly every reading is in range, and clearing a condition that is
        not active does nothing: those are checked once per key, in the snapshot, so
        the store's single writer stays free for the listeners (measured: this
        consumer held it for a search per Observation)."""
        steps: list[Step] = []
        with context.reader() as session:
            # the batch's versions in one query (not one per event: a round trip each
            # on PostgreSQL, for every Observation of every monitor message)
            for stored in session.versions_of(batch.events):
                if stored.content is None:
                    continue
                if stored.resource_type == "Device":
                    if GATEWAY_SYSTEM.encode() in stored.content:
                        steps.append(("gateway", stored.id, orjson.loads(stored.content), None))
                elif b'"device"' in stored.content:  # most Observations are not a device's
                    observation = orjson.loads(stored.content)
                    key = alarm_key(observation)
                    if key is not None:
                        kind = "clear" if alarm_of(observation) is None else "raise"
                        steps.append((kind, stored.id, observation, key))
            steps = self._without_idle_clears(session, steps)
        if not steps:
            return  # the runner moves the cursor past the batch
        with context.transaction() as session:
            for kind, id, content, _ in steps:
                if kind == "gateway":
                    self.gateway(session, id, content)
                else:
                    self.observed(session, id, content)

    def _without_idle_clears(self, session: Session, steps: list[Step]) -> list[Step]:
        """``steps`` less the clears of keys with no active alert, unless this batch
        raises the key before (clear_alert checks again under its lock).

        The keys to check are asked about together (:meth:`active_keys`, a search per
        many keys), not one search each: a batch of readings from a few monitors
        names a few dozen keys, and a search per key was a tenth of the server's CPU
        during an MLLP run (py-spy, issue 16)."""
        raised: set[str] = set()
        unsure: set[str] = set()  # keys cleared before any raise in this batch
        for kind, _, _, key in steps:
            if key is None:
                continue
            if kind == "raise":
                raised.add(key)
            elif key not in raised:
                unsure.add(key)
        active = self.host.alerts.active_keys(session, unsure) if unsure else set()
        raised.clear()
        kept = []
        for step in steps:
            kind, _, _, key = step
            if key is not None and kind == "raise":
                raised.add(key)
            elif key is not None and key not in raised and key not in active:
                continue
            kept.append(step)
        return kept

    def gateway(self, session: Session, id: str, device: dict[str, Any]) -> None:
        """Raise or clear the device-offline alerts of a gateway whose status changed."""
        patients = sorted({patient for device_id in (id, *children(session, id))
                           if (patient := patient_of(session, device_id)) is not None})
        name = ((device.get("deviceName") or [{}])[0]).get("name") or f"Device/{id}"
        offline = device.get("status") == "inactive"
        if offline and not patients:
            log.warning("gateway %s is offline; no patient uses it, so no alert is raised",
                        name)
        for patient in patients:
            key = f"device-offline|Device/{id}|{patient}"
            if not offline:
                self.host.alerts.clear_alert(session, key)
                continue
            self.host.alerts.raise_alert(session, Alert(
                key=key, subject=patient, code=OFFLINE_CODE, priority="urgent",
                text=f"Gateway {name} went offline: its devices' readings stop arriving.",
                source=f"Device/{id}"))

    def observed(self, session: Session, id: str, observation: dict[str, Any]) -> None:
        key = alarm_key(observation)
        if key is None:
            return
        reason = alarm_of(observation)
        if reason is None:
            self.host.alerts.clear_alert(session, key)
            return
        what = (observation.get("code") or {}).get("text") or \
            ((observation.get("code") or {}).get("coding") or [{}])[0].get("display") or \
            "a measurement"
        device = observation["device"]["reference"]
        self.host.alerts.raise_alert(session, Alert(
            key=key, subject=observation["subject"]["reference"], code=ALARM_CODE,
            text=f"Alarm on {what} from {device}: {reason}.", priority="urgent",
            source=f"Observation/{id}", author=device))
