"""Prefetch: the templates a service asks for, filled from the hook's context, and the
data of a missing key read from Hygeia's own store (never over HTTP to itself).

A template is a relative FHIR read (``Patient/{{context.patientId}}``) or search
(``Observation?patient={{context.patientId}}&code=...``). Searches are capped at
``MAX_PREFETCH`` resources. A key the client left out is fetched here when the
hook's ``fhirServer`` is this server (or absent); fetching from another FHIR server
is not offered yet, so such a call without its prefetch is refused with 412.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from hygeia.fhir.outcome import FhirError, PreconditionFailed
from hygeia.fhir.search.query import parse_query
from hygeia.server.extensions import Host
from hygeia.store import Session

MAX_PREFETCH = 200
TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}")
USER_TOKENS = {"userPractitionerId": "Practitioner", "userPractitionerRoleId":
               "PractitionerRole", "userPatientId": "Patient",
               "userRelatedPersonId": "RelatedPerson"}


def fill(template: str, context: Mapping[str, Any]) -> str | None:
    """The template with the context's values; None when one it names is missing."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = context.get(match.group(1))
        if not isinstance(found, str):
            missing = True
            return ""
        return quote(found, safe="/")

    filled = TOKEN.sub(value, template)
    user = str(context.get("userId") or "")
    for token, resource_type in USER_TOKENS.items():
        if "{{" + token + "}}" in filled:
            prefix = f"{resource_type}/"
            if not user.startswith(prefix):
                missing = True
            filled = filled.replace("{{" + token + "}}", user.removeprefix(prefix))
    return None if missing else filled


def complete(host: Host, templates: Mapping[str, str], request: dict[str, Any],
             root: str) -> dict[str, Any]:
    """The prefetch the client sent, with each missing key fetched from the store."""
    sent: dict[str, Any] = dict(request.get("prefetch") or {})
    missing = [key for key in templates if key not in sent]
    if not missing:
        return sent
    server = request.get("fhirServer")
    if server is not None and str(server).rstrip("/") != f"{root}/fhir":
        raise PreconditionFailed(
            f"The prefetch {', '.join(missing)} was not sent, and fetching it from "
            f"{str(server)[:200]} is not supported: send it as prefetch.",
            expression="prefetch")
    with host.reader() as session:
        for key in missing:
            filled = fill(templates[key], request["context"])
            sent[key] = None if filled is None else read(session, filled)
    return sent


def read(session: Session, relative: str) -> dict[str, Any] | None:
    """A relative read or search against the store: the resource or a searchset Bundle."""
    path, _, text = relative.partition("?")
    resource_type, _, id = path.partition("/")
    if id:
        stored = session.current(resource_type, id)
        if stored is None or stored.content is None:
            return None
        return dict(orjson.loads(stored.content))
    params = [(name, value) for name, value in parse_qsl(text, keep_blank_values=True)
              if name != "_count"]
    try:
        query = parse_query(resource_type, [*params, ("_count", str(MAX_PREFETCH))],
                            registry=session.registry)
    except FhirError as error:
        raise PreconditionFailed(f"A prefetch template cannot be run: {error}.",
                                 expression="prefetch") from None
    matches = session.search(query).matches
    return {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
            "entry": [{"resource": orjson.loads(stored.content or b"{}")}
                      for stored in matches]}
