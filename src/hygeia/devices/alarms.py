"""Device alarms become alerts: a reading a device flagged in alarm, or one outside the
device's own alarm limits, raises an alert through the core's alerting service; the
next reading of the same measurement within the limits clears it.

An :class:`EventConsumer` of the change feed does it, after commit, so the MLLP and
MQTT paths acknowledge as fast as they store and an alarm survives a crash between
commit and alert (the consumer's cursor resumes). One alert per device, measurement
and patient while the condition persists: the alerting service deduplicates by key.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from hygeia.devices.hl7v2.flags import MEASUREMENT_STATUS, PCD_ALARM
from hygeia.server.alerts import Alert
from hygeia.server.extensions import EventContext, PillarHost
from hygeia.store import ChangeBatch, Session

ALARM_LIMITS = "alarm limits"  # the referenceRange text prefix a device's limits carry
IN_ALARM_STATUS = "msmt-state-in-alarm"
ALARM_CODE = {"coding": [{"system": "urn:hygeia:codesystem:device-alert",
                          "code": "device-alarm", "display": "Device alarm"}]}


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


class DeviceAlarms:
    """Raises and clears device-alarm alerts from the Observations committed."""

    name = "devices-alarms"
    types: Collection[str] | None = ("Observation",)
    from_start = False  # alarms are about now: a new install does not replay history

    def __init__(self, host: PillarHost) -> None:
        self.host = host

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        with context.transaction() as session:
            for event in batch.events:
                stored = session.version(event.resource_type, event.id, event.version)
                if stored is not None and stored.content is not None and \
                        b'"device"' in stored.content:  # most Observations are not a device's
                    self.observed(session, event.id, orjson.loads(stored.content))

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
