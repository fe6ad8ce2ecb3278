"""``$status``, ``$events`` and ``$get-ws-binding-token`` of the Subscriptions Backport IG.

Each reads the Subscription through the caller's guarded session, so a token
that cannot read a Subscription cannot learn its status, its events or a
binding token for it.

* ``Subscription/{id}/$status`` (and ``Subscription/$status?id=...``): a
  searchset Bundle of SubscriptionStatus Parameters (type ``query-status``)
  with the status and the events-since-subscription-start count.
* ``Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=``: the
  recorded notifications again (type ``query-event``), so a client that sees a
  gap in event numbers recovers it; at most ``max_events_replayed`` per call.
* ``Subscription/{id}/$get-ws-binding-token``: a one-use token for the
  websocket channel (``bind-with-token <token>``), its expiry, and the
  ``websocket-url`` to connect to.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

import orjson

import hygeia.server.subscriptions.tables as tables
from hygeia.fhir.datetime import format_instant, now_us
from hygeia.fhir.outcome import BadRequest, NotFound, Unprocessable
from hygeia.server.context import FhirResponse, bundle
from hygeia.server.extensions import Operation, OperationCall
from hygeia.server.subscriptions.delivery import content_reader, fhir_base
from hygeia.server.subscriptions.notify import notification_bundle, status_parameters
from hygeia.server.subscriptions.spec import BACKPORT, SubscriptionSpec, read_subscription

OPERATIONS_BASE = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition"
MAX_STATUS_IDS = 100
SUBSCRIPTION = frozenset({"Subscription"})


def _parameter(call: OperationCall, name: str) -> list[str]:
    """Values of ``name`` from the query string, or from a Parameters body (POST)."""
    found = [value for key, value in call.request.query if key == name]
    body = call.request.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for parameter in body.get("parameter", []) or []:
            if isinstance(parameter, dict) and parameter.get("name") == name:
                found.extend(str(v) for k, v in parameter.items() if k.startswith("value"))
    return found


def _number(call: OperationCall, name: str) -> int | None:
    values = _parameter(call, name)
    if not values:
        return None
    text = values[0]
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{name} must be a whole number, not {text[:40]!r}.", expression=name)
    return int(text)


def _spec(call: OperationCall, id: str) -> SubscriptionSpec:
    assert call.session is not None
    found = call.session.current("Subscription", id)
    if found is None or found.deleted or found.content is None:
        raise NotFound(f"Subscription/{id} is not known here.", expression="id")
    return read_subscription(orjson.loads(found.content), call.host.registry)


def _state(call: OperationCall, id: str) -> tables.State:
    state = tables.read_state(call.host.repository, id)
    if state is None:  # stored, but the change feed has not reached it yet
        return tables.State(id, "requested", 0, 0, 0, 0, 0, 0, None, None, None)
    return state


def status(call: OperationCall) -> FhirResponse:
    ids = [call.id] if call.id else [i for value in _parameter(call, "id")
                                     for i in value.split(",") if i]
    if not call.id and not ids:  # the live ones, as many as one answer holds
        ids = [s.id for s in tables.live_states_of(call.host.repository)][:MAX_STATUS_IDS]
    if len(ids) > MAX_STATUS_IDS:
        raise BadRequest(f"At most {MAX_STATUS_IDS} subscriptions per $status call.",
                         expression="id")
    base = fhir_base(call.host)
    entries: list[dict[str, Any]] = []
    for id in ids:
        try:
            spec = _spec(call, id)
        except (NotFound, Unprocessable):  # listed: unknown or no longer honoured ones
            if call.id:
                raise
            continue
        state = _state(call, id)
        parameters = status_parameters(spec, base, state.status, "query-status",
                                       state.events, error=state.error)
        entries.append({"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
                        "search": {"mode": "match"}})
    return FhirResponse(200, resource=bundle("searchset", entries, total=len(entries)))


def events(call: OperationCall) -> FhirResponse:
    assert call.id is not None
    spec = _spec(call, call.id)
    state = _state(call, call.id)
    since = _number(call, "eventsSinceNumber")
    until = _number(call, "eventsUntilNumber")
    limit = call.host.settings.subscriptions.max_events_replayed
    after = max(0, (since or 1) - 1)
    if since is None and until is None:
        after = max(0, state.events - limit)
    if until is not None and until < after + 1:
        raise BadRequest("eventsUntilNumber is before eventsSinceNumber.",
                         expression="eventsUntilNumber")
    replayed = tables.notifications(call.host.repository, call.id, after, until, limit)
    content = _parameter(call, "content")
    if content:
        if content[0] not in ("empty", "id-only", "full-resource"):
            raise BadRequest("content must be empty, id-only or full-resource.",
                             expression="content")
        spec = replace(spec, content=content[0])
    answer = notification_bundle(spec, fhir_base(call.host), state.status, "query-event",
                                 state.events, replayed, content_reader(call.host))
    return FhirResponse(200, resource=answer)


def binding_token(call: OperationCall) -> FhirResponse:
    assert call.id is not None
    spec = _spec(call, call.id)
    settings = call.host.settings.subscriptions
    if spec.channel != "websocket":
        raise Unprocessable(f"Subscription/{call.id} uses the {spec.channel} channel, not "
                            "websocket.", expression="Subscription.channel.type")
    if settings.ws_port is None:
        raise Unprocessable("This server has no websocket channel (hygeia serve --ws-port).",
                            code="not-supported")
    now = now_us()
    token = secrets.token_urlsafe(24)
    expires = now + settings.token_seconds * 1_000_000
    tables.save_token(call.host.repository, token, call.id, expires, now)
    url = settings.ws_url or f"ws://{settings.ws_host}:{settings.ws_port}"
    return FhirResponse(200, resource={"resourceType": "Parameters", "parameter": [
        {"name": "token", "valueString": token},
        {"name": "expiration", "valueDateTime": format_instant(expires)},
        {"name": "subscription", "valueString": f"Subscription/{call.id}"},
        {"name": "websocket-url", "valueUrl": url},
    ]})


SUBSCRIPTION_OPERATIONS = (
    Operation("status", status, f"{OPERATIONS_BASE}/backport-subscription-status",
              types=SUBSCRIPTION, instances=SUBSCRIPTION, methods=("GET", "POST"),
              session="read", access="r", audit_action="R",
              documentation="The status of subscriptions and their event counts "
                            "(Subscriptions Backport IG)."),
    Operation("events", events, f"{OPERATIONS_BASE}/backport-subscription-events",
              instances=SUBSCRIPTION, methods=("GET", "POST"), session="read", access="r",
              audit_action="R",
              documentation="Replay recorded notification events by event number "
                            "(eventsSinceNumber, eventsUntilNumber, content)."),
    Operation("get-ws-binding-token", binding_token,
              f"{OPERATIONS_BASE}/backport-subscription-get-ws-binding-token",
              instances=SUBSCRIPTION, methods=("GET", "POST"), session="read", access="r",
              audit_action="E",
              documentation="A token to bind a websocket connection to the subscription, "
                            "and the websocket-url to connect to."),
)

__all__ = ["BACKPORT", "SUBSCRIPTION_OPERATIONS"]
