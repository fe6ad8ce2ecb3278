"""A pillar for tests that raises alerts the way a devices or clinical pillar would.

An :class:`EventConsumer` of the change feed watches Observations coded
``urn:example:alarm|in-alarm``: each raises an alert for its subject (key: the
Observation's identifier), which escalates after ``valueQuantity.value``
seconds; one with ``interpretation`` N (normal) clears it.
tests/api/test_alerts_http.py installs it; it adds no operation, so alerts
reach clients only through the core's FHIR resources.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson

from hygeia.server.alerts import Alert
from hygeia.server.extensions import CliCommand, EventContext, PillarHost
from hygeia.store import ChangeBatch, Session

ALARM = "urn:example:alarm"


class AlarmWatcher:
    """Raises or clears an alert for each alarm Observation, in the cursor's transaction."""

    name = "test-alarm-watcher"
    types: Collection[str] | None = ("Observation",)
    from_start = True

    def __init__(self, host: PillarHost) -> None:
        self.host = host

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        with context.transaction() as session:
            for event in batch.events:
                stored = session.version(event.resource_type, event.id, event.version)
                if stored is not None and stored.content is not None:
                    self._observed(session, orjson.loads(stored.content))

    def _observed(self, session: Session, observation: dict[str, Any]) -> None:
        codes = {(c.get("system"), c.get("code"))
                 for c in (observation.get("code") or {}).get("coding") or []}
        if (ALARM, "in-alarm") not in codes:
            return
        key = f"test-alarm|{observation['identifier'][0]['value']}"
        normal = any(c.get("code") == "N" for i in observation.get("interpretation") or []
                     for c in i.get("coding") or [])
        if normal:
            self.host.alerts.clear_alert(session, key)
            return
        self.host.alerts.raise_alert(session, Alert(
            key=key, subject=observation["subject"]["reference"], code=observation["code"],
            text=f"Alarm {key}.", priority="urgent",
            source=f"Observation/{observation['id']}",
            escalate_after=float(observation["valueQuantity"]["value"])))


class AlertingPillar:
    name = "alerting-test"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        """No flags."""

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        host.add_event_consumer(AlarmWatcher(host))

    def commands(self) -> Sequence[CliCommand]:
        return []

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        return []


PILLAR = AlertingPillar()
