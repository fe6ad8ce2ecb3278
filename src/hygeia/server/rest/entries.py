"""Bundle entries: parsed, checked and validated, for transactions, batches and the offload helper.

``ORDER`` is the spec's processing order within a transaction (DELETE, POST,
PUT/PATCH, GET); errors found in an entry are re-anchored at
``Bundle.entry[i]`` so the client sees which entry failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from hygeia.fhir.outcome import BadRequest, FhirError, Issue, MethodNotAllowed, Unprocessable
from hygeia.fhir.validation import MAX_ISSUES, too_many_issues, validate
from hygeia.server.context import FhirResponse
from hygeia.server.rest.router import Route, parse_route

if TYPE_CHECKING:
    from hygeia.server.extensions import Operations

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(slots=True)
class Entry:
    """One Bundle entry with what the transaction resolved for it."""

    index: int
    method: str
    url: str
    route: Route
    query: list[tuple[str, str]]
    full_url: str | None
    resource: Any
    request: dict[str, Any]
    target_id: str | None = None
    existing: bool = False
    response: FhirResponse | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def parse_entries(bundle: dict[str, Any], operations: Operations | None = None) -> list[Entry]:
    """The entries of a batch or transaction; ``operations`` resolves ``$name`` entries
    (without it they are only shaped, enough for validation)."""
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array.", expression="Bundle.entry")
    entries: list[Entry] = []
    issues: list[Issue] = []
    refused = False
    for index, raw in enumerate(raw_entries):
        try:
            entries.append(parse_entry(index, raw, operations))
        except FhirError as error:
            issues.extend(located_issues(error.issues, f"Bundle.entry[{index}]"))
            refused = refused or isinstance(error, MethodNotAllowed)
    if issues:  # a write the API never allows (the audit trail) is 405, as outside a Bundle
        raise (MethodNotAllowed if refused else BadRequest)(issues=issues)
    return entries


def parse_entry(index: int, raw: Any, operations: Operations | None = None) -> Entry:
    where = f"Bundle.entry[{index}]"
    request = raw.get("request") if isinstance(raw, dict) else None
    if not isinstance(request, dict):
        raise BadRequest("Each entry needs a request with method and url.",
                         expression=f"{where}.request")
    method = str(request.get("method", "")).upper()
    url = request.get("url")
    if method not in ORDER or not isinstance(url, str) or not url:
        raise BadRequest(f"Entry request method {method!r} / url {url!r} is not valid.",
                         expression=f"{where}.request")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    route = parse_route(method, parts.path, query, operations)
    return Entry(index, method, url, route, query, raw.get("fullUrl"), raw.get("resource"),
                 request)


def located_issues(issues: list[Issue], where: str) -> list[Issue]:
    """Re-anchor issues from a resource-relative expression to the Bundle entry."""
    located = []
    for issue in issues:
        expression = issue.expression
        if expression and "." in expression and not expression.startswith("Bundle.entry"):
            expression = f"{where}.resource.{expression.split('.', 1)[1]}"
        elif not expression or not expression.startswith("Bundle.entry"):
            expression = where
        located.append(Issue(issue.code, issue.diagnostics, expression, issue.severity))
    return located


@contextmanager
def located(entry: Entry) -> Iterator[None]:
    """Re-raise an entry's error anchored at ``Bundle.entry[i]``, naming the entry."""
    try:
        yield
    except FhirError as error:
        located = type(error)(issues=located_issues(error.issues, entry.where),
                              headers=error.headers)
        located.issues.insert(0, Issue(located.issues[0].code,
                                       f"Entry {entry.index} ({entry.method} {entry.url}) "
                                       "failed; the transaction was rolled back.", entry.where))
        raise located from None


def validate_entries(entries: list[Entry]) -> None:
    issues: list[Issue] = []
    for entry in entries:
        if entry.method not in ("POST", "PUT"):
            continue
        resource_type = entry.route.resource_type or ""
        if not isinstance(entry.resource, dict):
            issues.append(Issue("required", f"{entry.method} entries need a resource.",
                                f"{entry.where}.resource"))
            continue
        issues.extend(located_issues(validate(entry.resource, resource_type), entry.where))
        if len(issues) >= MAX_ISSUES:  # enough to act on; the rest would only cost memory
            issues = [*issues[:MAX_ISSUES], too_many_issues()]
            break
    if issues:
        raise Unprocessable(issues=[Issue("processing", f"The transaction has {len(issues)} "
                                          "validation issue(s); nothing was stored.",
                                          "Bundle"), *issues])
