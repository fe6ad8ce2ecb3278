"""Server-side stamping of resources: ids, meta.versionId, meta.lastUpdated."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from hygeia.fhir.datetime import format_instant
from hygeia.fhir.outcome import BadRequest, NotFound
from hygeia.fhir.spec import is_resource_type

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def new_id() -> str:
    """A server-assigned logical id (a random UUID: unguessable, no coordination needed)."""
    return str(uuid.uuid4())


def check_type(resource_type: str) -> str:
    if not is_resource_type(resource_type):
        raise NotFound(f"'{resource_type}' is not a FHIR R4 resource type.",
                       code="not-supported", expression=resource_type)
    return resource_type


def check_id(id: str, where: str = "id") -> str:
    if not ID_PATTERN.fullmatch(id):
        raise BadRequest(f"'{id}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .).",
                         expression=where)
    return id


def stamp(resource: dict[str, Any], id: str, version: int, last_updated: int) -> bytes:
    """Set id and meta, and serialise: the stored bytes are what reads return."""
    resource["id"] = id
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(last_updated)
    # keep resourceType, id, meta first: readers expect them at the top
    ordered = {"resourceType": resource["resourceType"], "id": id, "meta": meta}
    ordered.update(resource)
    resource.clear()
    resource.update(ordered)
    return orjson.dumps(resource)
