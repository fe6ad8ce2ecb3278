"""What a Subscription asks for, read once and refused when the server cannot honour it.

Two shapes are accepted (docs/guide/subscriptions.md):

* R4 criteria-based: ``criteria`` is a search URL (``Observation?code=...``),
  evaluated with the in-memory matcher against every created, updated or
  deleted resource of that type;
* topic-based, as the Subscriptions R5 Backport IG profiles an R4
  Subscription: ``criteria`` is a topic canonical ``urn:hygeia:topic:{Type}``
  and the filters are ``_criteria`` extensions (``backport-filter-criteria``,
  ``Type?param=value``).

Both may filter on ``interaction`` (create, update, delete), a pseudo search
parameter.  What cannot be honoured is refused here, with the element at
fault: another channel type, an endpoint that is not http(s), a payload type
other than FHIR JSON, an unknown topic, a search the matcher cannot evaluate
on one resource (chains, ``_has``), or an unknown search parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest, Unprocessable
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.query import (
    ChainClause,
    CompartmentClause,
    HasClause,
    Query,
    SearchLimits,
    parse_query,
)
from hygeia.fhir.spec import is_resource_type

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
BACKPORT_PROFILE = f"{BACKPORT}/backport-subscription"
FILTER_CRITERIA = f"{BACKPORT}/backport-filter-criteria"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT_PERIOD = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
MAX_COUNT = f"{BACKPORT}/backport-max-count"
TOPIC_CANONICAL = f"{BACKPORT}/capabilitystatement-subscriptiontopic-canonical"
TOPIC_PREFIX = "urn:hygeia:topic:"

CHANNELS = ("rest-hook", "websocket")
MIME_TYPES = ("application/fhir+json", "application/json")
CONTENTS = ("empty", "id-only", "full-resource")
INTERACTIONS = ("create", "update", "delete")
MAX_HEADERS = 20  # channel.header lines
MAX_HEADER_CHARS = 4096
MAX_ENDPOINT_CHARS = 2048


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """One Subscription as the server honours it."""

    id: str
    status: str
    resource_type: str  # of the resources it is notified about
    topic: str | None  # the topic canonical (None: R4 criteria-based)
    query: Query  # filters as a search on resource_type
    interactions: frozenset[str]
    channel: str  # rest-hook | websocket
    endpoint: str | None
    headers: tuple[tuple[str, str], ...]
    content: str  # empty | id-only | full-resource
    mime: str
    heartbeat_seconds: int | None
    timeout_seconds: int | None
    max_count: int
    end: int | None = None  # Subscription.end, microseconds: no events after it

    @property
    def topic_url(self) -> str:
        """The canonical notifications name as their topic (criteria-based: the type's)."""
        return self.topic or f"{TOPIC_PREFIX}{self.resource_type}"

    def wants(self, interaction: str, at: int) -> bool:
        """Whether an event of ``interaction`` committed at ``at`` is for it."""
        return interaction in self.interactions and (self.end is None or at <= self.end)


def topic_for(resource_type: str) -> str:
    return f"{TOPIC_PREFIX}{resource_type}"


def read_subscription(resource: dict[str, Any], registry: SearchRegistry) -> SubscriptionSpec:
    """The :class:`SubscriptionSpec` of ``resource``, or :class:`Unprocessable` saying
    which element the server cannot honour."""
    channel = _dict(resource.get("channel"), "Subscription.channel")
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise _refuse(f"Channel type {kind!r} is not supported; this server sends "
                      f"{' and '.join(CHANNELS)} notifications.", "Subscription.channel.type")
    resource_type, topic, query, interactions = _criteria(resource, registry)
    return SubscriptionSpec(
        id=str(resource.get("id", "")), status=str(resource.get("status", "requested")),
        resource_type=resource_type, topic=topic, query=query, interactions=interactions,
        channel=kind, endpoint=_endpoint(channel, kind), headers=_headers(channel),
        content=_content(channel), mime=_mime(channel),
        heartbeat_seconds=_unsigned(channel, HEARTBEAT_PERIOD, "valueUnsignedInt"),
        timeout_seconds=_unsigned(channel, TIMEOUT, "valueUnsignedInt"),
        max_count=max(1, _unsigned(channel, MAX_COUNT, "valuePositiveInt") or 1),
        end=_end(resource.get("end")))


def _end(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return fhir_datetime_range(value, name="Subscription.end")[1]
    except (BadRequest, ValueError):
        raise Unprocessable(f"Subscription.end {value[:40]!r} is not an instant.",
                            expression="Subscription.end") from None


def _extensions(element: Any) -> list[dict[str, Any]]:
    """The extensions of an element, whatever shape a load without validation gave it."""
    found = element.get("extension") if isinstance(element, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _refuse(message: str, expression: str) -> Unprocessable:
    return Unprocessable(message, expression=expression, code="not-supported")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unprocessable(f"{where} is required.", expression=where, code="required")
    return value


def _criteria(resource: dict[str, Any], registry: SearchRegistry
              ) -> tuple[str, str | None, Query, frozenset[str]]:
    criteria = resource.get("criteria")
    if not isinstance(criteria, str) or not criteria:
        raise Unprocessable("Subscription.criteria is required: a search URL such as "
                            "Observation?code=... or a topic such as urn:hygeia:topic:Observation.",
                            expression="Subscription.criteria", code="required")
    if criteria.startswith(TOPIC_PREFIX) or "://" in criteria or criteria.startswith("urn:"):
        resource_type = criteria.removeprefix(TOPIC_PREFIX)
        if not criteria.startswith(TOPIC_PREFIX) or not is_resource_type(resource_type):
            raise _refuse(f"The topic {criteria[:200]!r} is not known here; topics are "
                          f"{TOPIC_PREFIX}{{ResourceType}}.", "Subscription.criteria")
        filters = _filters(resource, resource_type)
        query, interactions = _search(resource_type, filters, registry,
                                      "Subscription.criteria.extension")
        return resource_type, criteria, query, interactions
    resource_type, _, search = criteria.partition("?")
    if not is_resource_type(resource_type):
        raise _refuse(f"The criteria {criteria[:200]!r} do not start with a resource type.",
                      "Subscription.criteria")
    query, interactions = _search(resource_type, parse_qsl(search, keep_blank_values=True),
                                  registry, "Subscription.criteria")
    return resource_type, None, query, interactions


def _filters(resource: dict[str, Any], resource_type: str) -> list[tuple[str, str]]:
    """The backport filter criteria (``Type?param=value``), ANDed together."""
    extensions = _extensions(resource.get("_criteria"))
    pairs: list[tuple[str, str]] = []
    for extension in extensions:
        if extension.get("url") != FILTER_CRITERIA:
            continue
        value = extension.get("valueString")
        where = "Subscription.criteria.extension"
        if not isinstance(value, str):
            raise Unprocessable("A filter criteria extension needs a valueString.",
                                expression=where)
        head, _, search = value.partition("?")
        if head and head != resource_type:
            raise _refuse(f"The filter {value[:200]!r} is not on {resource_type}, the "
                          "topic's resource type.", where)
        pairs.extend(parse_qsl(search, keep_blank_values=True))
    return pairs


def _search(resource_type: str, pairs: list[tuple[str, str]], registry: SearchRegistry,
            where: str) -> tuple[Query, frozenset[str]]:
    interactions: set[str] = set()
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name == "interaction":
            for code in value.split(","):
                if code not in INTERACTIONS:
                    raise _refuse(f"interaction={code!r} is not one of "
                                  f"{', '.join(INTERACTIONS)}.", where)
                interactions.add(code)
        else:
            rest.append((name, value))
    try:
        query = parse_query(resource_type, rest, strict=True, registry=registry,
                            limits=SearchLimits())
    except BadRequest as error:
        raise Unprocessable(f"The criteria cannot be used: {error}", expression=where,
                            code="not-supported") from None
    if any(isinstance(c, (ChainClause, HasClause, CompartmentClause)) for c in query.clauses):
        raise _refuse("Chained parameters and _has need other resources, so a notification "
                      "cannot be decided from the changed resource alone; they are not "
                      "supported in subscription criteria.", where)
    return query, frozenset(interactions or INTERACTIONS)


def _endpoint(channel: dict[str, Any], kind: str) -> str | None:
    endpoint = channel.get("endpoint")
    where = "Subscription.channel.endpoint"
    if kind == "websocket":
        return None
    if not isinstance(endpoint, str) or not endpoint:
        raise Unprocessable("A rest-hook channel needs an endpoint.", expression=where,
                            code="required")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or \
            len(endpoint) > MAX_ENDPOINT_CHARS:
        raise _refuse(f"The endpoint {endpoint[:200]!r} is not an http or https URL "
                      f"(of at most {MAX_ENDPOINT_CHARS} characters).", where)
    return endpoint


def _headers(channel: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    lines = channel.get("header") or []
    where = "Subscription.channel.header"
    if not isinstance(lines, list) or len(lines) > MAX_HEADERS or \
            not all(isinstance(line, str) for line in lines):
        raise Unprocessable(f"channel.header must be a list of at most {MAX_HEADERS} "
                            "'Name: value' strings.", expression=where)
    found = []
    for line in lines:
        name, colon, value = str(line).partition(":")
        if not colon or not name.strip() or len(line) > MAX_HEADER_CHARS or \
                any(c in line for c in "\r\n\0"):
            raise Unprocessable(f"The header {str(line)[:100]!r} is not 'Name: value'.",
                                expression=where)
        found.append((name.strip(), value.strip()))
    return tuple(found)


def _mime(channel: dict[str, Any]) -> str:
    payload = channel.get("payload")
    if payload is None:
        return MIME_TYPES[0]
    mime = str(payload).split(";")[0].strip()
    if mime not in MIME_TYPES:
        raise _refuse(f"The payload type {str(payload)[:100]!r} is not supported; use "
                      f"{' or '.join(MIME_TYPES)}.", "Subscription.channel.payload")
    return mime


def _content(channel: dict[str, Any]) -> str:
    """Backport payload content; an R4 Subscription without it: full resources when it
    names a payload type, else empty notifications (R4's meaning of payload)."""
    for extension in _extensions(channel.get("_payload")):
        if extension.get("url") == PAYLOAD_CONTENT:
            code = extension.get("valueCode")
            if code not in CONTENTS:
                raise _refuse(f"Payload content {code!r} is not one of {', '.join(CONTENTS)}.",
                              "Subscription.channel.payload.extension")
            return str(code)
    return "full-resource" if channel.get("payload") else "empty"


def _unsigned(channel: dict[str, Any], url: str, kind: str) -> int | None:
    for extension in _extensions(channel):
        if extension.get("url") == url:
            value = extension.get(kind)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise Unprocessable(f"The extension {url} needs a non-negative {kind}.",
                                    expression="Subscription.channel.extension")
            return value
    return None
