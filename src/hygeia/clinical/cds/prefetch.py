"""Prefetch: the templates a service asks for, filled from the hook's context, and the
data of a missing key read from Hygeia's own store (never over HTTP to itself).

A template is a relative FHIR read (``Patient/{{context.patientId}}``) or search
(``Observation?patient={{context.patientId}}&code=...``). Searches are capped at
``MAX_PREFETCH`` resources. A key the client left out is fetched here when the
hook's ``fhirServer`` is this server (or absent). Otherwise it is fetched from
``fhirServer`` with the ``fhirAuthorization`` access token the EHR handed over,
through the server's guarded outbound client (``--outbound-allow`` for a server on
a private address; its timeout and size limits); a search takes the first page.
What cannot be fetched makes the call a 412.
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
from hygeia.server.outbound import OutboundPolicy, OutboundRefused, fetch
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
        for key in missing:
            filled = fill(templates[key], request["context"])
            sent[key] = None if filled is None else \
                fetch_remote(host, str(server), filled, request.get("fhirAuthorization"))
        return sent
    with host.reader() as session:
        for key in missing:
            filled = fill(templates[key], request["context"])
            sent[key] = None if filled is None else read(session, filled)
    return sent


def fetch_remote(host: Host, server: str, relative: str, authorization: Any) -> Any:
    """GET ``relative`` from the EHR's FHIR server with the token it handed over."""
    headers = {"Accept": "application/fhir+json"}
    if isinstance(authorization, dict) and isinstance(authorization.get("access_token"), str):
        headers["Authorization"] = f"Bearer {authorization['access_token']}"
    outbound = host.settings.outbound
    policy = OutboundPolicy(outbound.allow, outbound.timeout_seconds, outbound.max_bytes)
    url = f"{server.rstrip('/')}/{relative}"
    try:
        found = fetch(url, policy, headers).json()
    except OutboundRefused as error:
        raise PreconditionFailed(f"The prefetch {relative[:200]} could not be fetched from "
                                 f"the fhirServer: {error}", expression="fhirServer") from None
    if not isinstance(found, dict) or "resourceType" not in found:
        raise PreconditionFailed(f"The fhirServer's answer to {relative[:200]} is not a "
                                 "FHIR resource.", expression="fhirServer")
    return found


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
