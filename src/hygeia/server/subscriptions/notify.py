"""Notification Bundles as the Subscriptions R5 Backport IG shapes them for R4.

Every notification (handshake, heartbeat, event notification, and the answers
of ``$status`` and ``$events``) is a Bundle of type ``history`` whose first
entry is the SubscriptionStatus in its R4 form, a Parameters resource; event
notifications then hold one entry per event: with ``id-only`` its URL and the
interaction, with ``full-resource`` the resource version too, and with
``empty`` nothing (the status says only how many events happened).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from hygeia.fhir.datetime import format_instant, now_us
from hygeia.server.subscriptions.spec import BACKPORT, SubscriptionSpec
from hygeia.server.subscriptions.tables import Notified

STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
_METHOD = {"create": ("POST", "201"), "update": ("PUT", "200"), "delete": ("DELETE", "204")}

# reads the content of a version: (type, id, version) -> JSON bytes, or None when it is
# gone or the subscriber may not see it
ContentOf = Callable[[str, str, int], bytes | None]


def status_parameters(spec: SubscriptionSpec, base: str, status: str, kind: str,
                      events: int, notified: Sequence[Notified] = (),
                      error: str | None = None) -> dict[str, Any]:
    """The SubscriptionStatus (R4 backport Parameters) of a notification of ``kind``."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": _url(base,
                                                                      f"Subscription/{spec.id}")}},
        {"name": "topic", "valueCanonical": spec.topic_url},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events)},
    ]
    for event in notified:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": format_instant(event.at)}]
        if spec.content != "empty":
            parts.append({"name": "focus", "valueReference": {
                "reference": _url(base, f"{event.resource_type}/{event.id}")}})
        parameters.append({"name": "notification-event", "part": parts})
    if error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()),
            "meta": {"profile": [STATUS_PROFILE]}, "parameter": parameters}


def notification_bundle(spec: SubscriptionSpec, base: str, status: str, kind: str,
                        events: int, notified: Sequence[Notified] = (),
                        content_of: ContentOf | None = None,
                        error: str | None = None) -> dict[str, Any]:
    """The whole notification: status entry first, then the events' entries."""
    parameters = status_parameters(spec, base, status, kind, events, notified, error)
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
        "request": {"method": "GET", "url": _url(base, f"Subscription/{spec.id}/$status")},
        "response": {"status": "200"}}]
    if spec.content != "empty":
        entries.extend(_event_entry(spec, base, event, content_of) for event in notified)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "history",
            "timestamp": format_instant(now_us()), "entry": entries}


def _event_entry(spec: SubscriptionSpec, base: str, event: Notified,
                 content_of: ContentOf | None) -> dict[str, Any]:
    method, status = _METHOD.get(event.interaction, ("PUT", "200"))
    path = f"{event.resource_type}/{event.id}"
    entry: dict[str, Any] = {
        "fullUrl": _url(base, path),
        "request": {"method": method, "url": event.resource_type if method == "POST" else path},
        "response": {"status": status, "etag": f'W/"{event.version}"',
                     "lastModified": format_instant(event.at)}}
    if spec.content == "full-resource" and event.interaction != "delete" and content_of:
        content = content_of(event.resource_type, event.id, event.version)
        if content is not None:
            entry["resource"] = orjson.loads(content)
    return entry


def _url(base: str, path: str) -> str:
    return f"{base.rstrip('/')}/{path}" if base else path
