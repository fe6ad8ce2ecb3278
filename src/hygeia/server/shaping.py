"""Shaping returned resources for ``_summary`` and ``_elements`` (search.html#summary).

A shaped resource is marked with the SUBSETTED tag so no client mistakes it
for the whole record (and no client writes it back as if it were).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hygeia.fhir.spec import type_definitions

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}
ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _summary_elements(resource_type: str) -> frozenset[str]:
    return frozenset(_json_keys(resource_type, lambda e: bool(e.get("s"))))


@cache
def _mandatory_elements(resource_type: str) -> frozenset[str]:
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
        allowed = ALWAYS | {"text"} | _mandatory_elements(kind)
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
    keys = set(names)
    for element in definition["elements"]:
        if element["n"] in names and "x" in element:
            keys.update(element["x"].keys())
    return keys
