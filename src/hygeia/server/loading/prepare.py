"""The per-line work of a bulk load: parse, validate, stamp and index one NDJSON line.

It is a pure function of the line (and the search parameters in force), so it
runs in worker processes, several lines at a time, while the loader's one
writer stores what the workers have already prepared.  Everything that does
not depend on the database is done here; the writer only decides versions
(which needs the database) and inserts.

A prepared line is stamped as version 1 at the worker's clock.  When the
writer finds the id already stored (``--upsert``) it restamps: the worker
records where ``meta`` sits in the bytes, so that costs a re-serialisation of
``meta`` alone, not of the whole resource (:func:`restamp`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from hygeia.fhir.datetime import format_instant, now_us
from hygeia.fhir.outcome import Issue
from hygeia.fhir.resources import new_id, stamp
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.validation import validate
from hygeia.store import prepare_rows

MAX_ISSUES = 3  # validation issues named per bad line (the count says how many more)


class Prepared(NamedTuple):
    """One line ready to store (pickled as a plain tuple between processes)."""

    line: int
    resource_type: str
    id: str
    client_id: bool  # the line named the id (else the worker assigned one)
    content: bytes  # stamped as version 1 at ``last_updated`` (raw line for a SearchParameter)
    meta_start: int  # content[meta_start:meta_end] is the serialised ``meta``
    meta_end: int
    last_updated: int
    tables: tuple[tuple[tuple[Any, ...], ...], ...] | None  # PreparedRows.tables; None: a
    # SearchParameter


class LineError(NamedTuple):
    line: int
    message: str


def prepare_lines(lines: list[tuple[int, bytes]], registry: SearchRegistry
                  ) -> tuple[list[Prepared], list[LineError]]:
    """Prepare every line; a bad line becomes a :class:`LineError`, never an exception."""
    prepared: list[Prepared] = []
    errors: list[LineError] = []
    for number, line in lines:
        try:
            result = prepare_line(number, line, registry)
        except Exception as error:  # a bug must cost one line, never the load
            result = LineError(number, f"could not be prepared ({type(error).__name__}: "
                                       f"{error})")
        if isinstance(result, LineError):
            errors.append(result)
        else:
            prepared.append(result)
    return prepared, errors


def prepare_line(number: int, line: bytes, registry: SearchRegistry) -> Prepared | LineError:
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return LineError(number, f"not JSON: {error}")
    issues = validate(resource)
    if issues:
        return LineError(number, describe_issues(issues))
    resource_type = resource["resourceType"]
    given = resource.get("id")
    id = given if isinstance(given, str) else new_id()
    if resource_type == "SearchParameter":  # stored through the ordinary write path
        return Prepared(number, resource_type, id, given is not None, line, 0, 0, 0, None)
    last_updated = now_us()
    content = stamp(resource, id, 1, last_updated)
    meta_start, meta_end = meta_span(resource_type, id, resource["meta"])
    tables = prepare_rows(resource_type, index_resource(resource, registry)).tables
    return Prepared(number, resource_type, id, given is not None, content, meta_start, meta_end,
                    last_updated, tables)


def describe_issues(issues: list[Issue]) -> str:
    """A line's validation issues as one sentence: where (FHIRPath) and what."""
    parts = [f"{issue.expression}: {issue.diagnostics}" if issue.expression
             else issue.diagnostics for issue in issues[:MAX_ISSUES]]
    more = len(issues) - MAX_ISSUES
    return "invalid: " + "; ".join(parts) + (f" (and {more} more issues)" if more > 0 else "")


def meta_span(resource_type: str, id: str, meta: dict[str, Any]) -> tuple[int, int]:
    """Where ``meta`` sits in ``stamp``'s output: it always follows resourceType and id."""
    start = len(b'{"resourceType":' + orjson.dumps(resource_type) + b',"id":' +
                orjson.dumps(id) + b',"meta":')
    return start, start + len(orjson.dumps(meta))


def restamp(item: Prepared, version: int, last_updated: int) -> bytes:
    """The bytes ``stamp`` would give the same resource as ``version`` at ``last_updated``.

    ``stamp`` keeps the keys of ``meta`` in place and only sets two values, so
    changing them in the serialised ``meta`` and splicing it back in is exact.
    """
    meta = orjson.loads(item.content[item.meta_start:item.meta_end])
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(last_updated)
    return item.content[:item.meta_start] + orjson.dumps(meta) + item.content[item.meta_end:]
