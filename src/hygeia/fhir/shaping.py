"""Shaping returned resources for ``_summary`` and ``_elements`` (search.html#summary).

A shaped resource is marked with the SUBSETTED tag so no client mistakes it
for the whole record (and no client writes it back as if it were).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.spec import type_definitions

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}
ALWAYS = frozenset({"resourceType", "id", "meta"})
# _summary=count asks for a number of matches, which a read has not got
READ_SUMMARY_MODES = ("true", "text", "data", "false")


@cache
def _summary_elements(resource_type: str) -> frozenset[str]:
    return frozenset(_json_keys(resource_type, lambda e: bool(e.get("s"))))


@cache
def mandatory_elements(resource_type: str) -> frozenset[str]:
    return frozenset(_json_keys(resource_type, lambda e: int(e.get("min", 0)) > 0))


def _json_keys(resource_type: str, wanted: Any) -> list[str]:
    definition = type_definitions().get(resource_type, {"elements": []})
    keys: list[str] = []
    for element in definition["elements"]:
        if wanted(element):
            keys.extend(element.get("x", {}).keys() or [element["n"]])
    return keys


def shape(resource: dict[str, Any], summary: str | None,
          elements: tuple[str, ...]) -> dict[str, Any]:
    """Return ``resource`` reduced per ``_summary`` / ``_elements`` (tagged SUBSETTED)."""
    kind = str(resource.get("resourceType", ""))
    if summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        allowed = ALWAYS | {"text"} | mandatory_elements(kind)
        kept = {k: v for k, v in resource.items() if k in allowed}
    elif summary == "true":
        allowed = ALWAYS | _summary_elements(kind)
        kept = {k: v for k, v in resource.items() if k in allowed}
    elif elements:
        allowed = ALWAYS | _expand_choices(kind, elements)
        kept = {k: v for k, v in resource.items() if k in allowed}
    else:
        return resource
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept


def _expand_choices(resource_type: str, names: tuple[str, ...]) -> set[str]:
    """``_elements=value`` keeps ``valueQuantity`` and the other ``value[x]`` forms."""
    definition = type_definitions().get(resource_type, {"elements": []})
    keys = set(names)  # a set: a read's _elements is bounded only by the URL's length
    for element in definition["elements"]:
        if element["n"] in keys and "x" in element:
            keys.update(element["x"].keys())
    return keys


def read_subset(params: Iterable[tuple[str, str]]) -> tuple[str | None, tuple[str, ...]]:
    """The ``_summary`` and ``_elements`` of a read or vread (http.html#read: "servers
    SHOULD support the _summary and _elements parameters on read"); other parameters of
    a read change nothing.  ``_summary=count`` is a 400: a read has no matches to count."""
    summary: str | None = None
    elements: tuple[str, ...] = ()
    for name, value in params:
        if name == "_summary":
            if value not in READ_SUMMARY_MODES:
                raise BadRequest(f"_summary on a read must be one of "
                                 f"{', '.join(READ_SUMMARY_MODES)}, not '{value[:40]}'.",
                                 expression="_summary")
            summary = value
        elif name == "_elements":
            elements = tuple(e.strip() for e in value.split(",") if e.strip())
    return summary, elements


def shape_stored(content: bytes, summary: str | None,
                 elements: tuple[str, ...]) -> dict[str, Any] | None:
    """The stored JSON ``content`` shaped per ``_summary`` / ``_elements``, or None
    when nothing is asked for (the stored bytes are then served as they are)."""
    if summary in (None, "false") and not elements:
        return None
    return shape(orjson.loads(content), summary, elements)
