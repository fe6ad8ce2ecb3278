"""Writing what a message became: update-as-create under deterministic ids, once.

Every resource goes through :func:`upsert_all`, which writes it with the FHIR
update interaction (validated like a client's PUT) unless the stored current
version already says the same thing. A replayed message therefore stores
nothing twice: no new resource and no new version.

Concurrency: the caller names a lock (the monitor, the lab order) that every
message writing the same resources takes first, so two messages about the same
new device serialise instead of colliding, and what was read stays true until
commit.

Cost: one batched look-up of every resource's head (version, deleted or not:
a deleted resource is revived by an update, not created again); then, for those
stored, their content, read by one ``_id`` search per resource type unless a
:class:`Remembered` holds that very version (a monitor message names the same
devices in every message, nearly always unchanged); no comparison at all for a
resource that is the very object found equal to that version before (a device
level is built once, :mod:`.devices_tree`); then one write per resource that is
new or changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from hygeia.devices.hl7v2.handling import Handled, Rejected
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.query import parse_criteria
from hygeia.fhir.search.rows import IndexRows
from hygeia.fhir.validation import validate
from hygeia.server.rest import write
from hygeia.store import Head, PreparedRows, Session, prepare_rows

IDS_PER_SEARCH = 90  # below the search's limit of 100 OR-ed values
MAX_REMEMBERED = 20_000  # resources a Remembered holds (it forgets them all beyond)
Key = tuple[str, str]


@dataclass(slots=True)
class Remembered:
    """The content of resources as committed, by type and id, with the version and
    ``lastUpdated`` it had, so the next message naming them needs no read of content;
    and which version each resource last compared equal to, so the next message
    naming the very same object (a device level built once, :mod:`.devices_tree`)
    needs no comparison either.

    Safe to trust only for that exact version: :func:`upsert_all` reads every head
    first, and any other write since (a client's update, a delete, a rollback of
    ours) shows as another version or time. Entries are added after commit only. One
    per handler of one database (a listener's), never shared between databases.
    """

    contents: dict[Key, tuple[int, int, dict[str, Any]]] = field(default_factory=dict)
    same: dict[Key, tuple[int, int, dict[str, Any]]] = field(default_factory=dict)

    def get(self, key: Key, version: int, last_updated: int) -> dict[str, Any] | None:
        found = self.contents.get(key)
        if found is None or found[0] != version or found[1] != last_updated:
            return None
        return found[2]

    def unchanged(self, key: Key, head: Head, resource: dict[str, Any]) -> bool:
        """Whether ``resource`` is the object found equal to version ``head`` before."""
        found = self.same.get(key)
        return found is not None and found[2] is resource and found[0] == head.version \
            and found[1] == head.last_updated

    def keep(self, found: dict[Key, tuple[int, int, dict[str, Any]]],
             same: dict[Key, tuple[int, int, dict[str, Any]]] | None = None) -> None:
        if len(self.contents) + len(found) > MAX_REMEMBERED or \
                len(self.same) + len(same or ()) > MAX_REMEMBERED:
            self.contents.clear()
            self.same.clear()
        self.contents.update(found)
        self.same.update(same or ())


def upsert(session: Session, resource: dict[str, Any], handled: Handled, *,
           location: str = "", remembered: Remembered | None = None) -> str:
    """Store one resource (it has its id) unless unchanged; returns ``Type/id``."""
    reference = f"{resource['resourceType']}/{resource['id']}"
    upsert_all(session, [(resource, location)], handled, lock=reference,
               remembered=remembered)
    return reference


def upsert_all(session: Session, resources: list[tuple[dict[str, Any], str]],
               handled: Handled, *, lock: str, remembered: Remembered | None = None,
               validated: Collection[int] = (),
               rows: Mapping[int, PreparedRows] | None = None) -> None:
    """Store each resource unless unchanged, in the order given (parents first).

    ``lock`` is taken first (see the module docstring). Each resource comes with
    the ERR location of the segment it was made from: a resource the server
    refuses (invalid FHIR) rejects the whole message there. ``remembered`` spares
    reading the content of versions it holds, and learns what this call read and
    wrote once the transaction commits. ``validated``: the ``id()`` of those of
    ``resources`` already found valid FHIR off the writer's turn (:func:`valid`), not
    validated again; ``rows``: by ``id()`` too, index rows extracted likewise
    (:func:`index_rows`), for the session's very registry.
    """
    session.lock_with_next([f"hl7v2:{lock}"])  # held before the heads are read
    named: dict[Key, dict[str, Any] | None] = {}  # None: named twice (compared each time)
    for resource, _ in resources:
        key = (resource["resourceType"], resource["id"])
        named[key] = resource if key not in named else None
    heads = session.heads(list(named))
    stored: dict[Key, dict[str, Any]] = {}
    unread: list[Key] = []
    unchanged: set[Key] = set()
    learned: dict[Key, tuple[int, int, dict[str, Any]]] = {}
    compared: dict[Key, tuple[int, int, dict[str, Any]]] = {}
    for key, head in heads.items():
        if head.deleted:
            continue
        if remembered is None:
            unread.append(key)
            continue
        resource_named = named.get(key)
        if resource_named is not None and remembered.unchanged(key, head, resource_named):
            unchanged.add(key)
            continue
        known = remembered.get(key, head.version, head.last_updated)
        if known is None:
            unread.append(key)
        else:
            stored[key] = known
    for key, (content, version, last_updated) in _stored_contents(session, unread).items():
        stored[key] = content
        learned[key] = (version, last_updated, content)
    for resource, location in resources:
        key = (resource["resourceType"], resource["id"])
        if key in unchanged:
            continue
        if key in stored and _same(stored[key], resource):
            if named.get(key) is resource:
                compared[key] = (heads[key].version, heads[key].last_updated, resource)
            continue
        written = _write(session, resource, location, create=key not in heads,
                         validated=id(resource) in validated,
                         rows=rows.get(id(resource)) if rows else None)
        heads[key] = Head(written[0], written[1], False)
        stored[key] = written[2]  # a message naming it twice updates it the second time
        learned[key] = written
        if f"{key[0]}/{key[1]}" not in handled.written:
            handled.written.append(f"{key[0]}/{key[1]}")
    if remembered is not None and (learned or compared):
        session.after_commit(lambda: remembered.keep(learned, compared))


def valid(resources: Iterable[dict[str, Any]]) -> frozenset[int]:
    """The ``id()`` of those of ``resources`` that are valid FHIR, for
    :func:`upsert_all`'s ``validated``: checked before the transaction, on the
    connection's thread (validation was a fifth of the SQLite committer's time while
    it held the writer's turn). Validity depends on the content alone, so it holds
    while the caller keeps the very objects unchanged; one found invalid is left out
    and validated again in the transaction, which refuses it with its location."""
    return frozenset(id(resource) for resource in resources
                     if not validate(resource, resource["resourceType"]))


def index_rows(resources: Iterable[dict[str, Any]], registry: SearchRegistry
               ) -> dict[int, PreparedRows]:
    """The index rows of each of ``resources`` by its ``id()``, in the side tables'
    form, for :func:`upsert_all`'s ``rows``: extracted before the transaction, on the
    connection's thread (extraction and the rows' hashing were a sixth of the SQLite
    committer's time while it held the writer's turn). A resource's rows depend on its
    content and the registry alone, not on the ``meta`` a write stamps."""
    return {id(resource): prepare_rows(resource["resourceType"],
                                       index_resource(resource, registry))
            for resource in resources}


@contextmanager
def _rows_given(session: Session, rows: PreparedRows | None) -> Iterator[None]:
    """While it lasts, the write interaction takes ``rows`` as the index rows of what it
    writes (through the session's ``rows_later`` hook, which it asks for them), instead
    of extracting them. For one write at a time: the hook is put back after."""
    if rows is None:
        yield
        return
    later = session.rows_later
    session.rows_later = lambda resource, content: cast(Callable[[], IndexRows], rows)
    try:
        yield
    finally:
        session.rows_later = later


def _write(session: Session, resource: dict[str, Any], location: str, *, create: bool,
           validated: bool = False, rows: PreparedRows | None = None
           ) -> tuple[int, int, dict[str, Any]]:
    """Create (a resource never stored: no read needed) or update it; the version and
    ``lastUpdated`` written, and the content as stored.

    That content is ``body`` as the write stamped it (id and meta set in place), the
    very dict it serialised: not the stored bytes parsed again (measured: 3% of the
    MLLP committer's time, for content that is nearly always an Observation no later
    message names again)."""
    resource_type, id = resource["resourceType"], resource["id"]
    body = dict(resource)  # the write sets id and meta at the top level only
    if isinstance(body.get("meta"), dict):
        body["meta"] = dict(body["meta"])  # stamped in place: not the caller's
    try:
        with _rows_given(session, rows):
            if create:
                response = write.create(session, resource_type, body, id=id,
                                        validated=validated)
            else:
                response = write.update(session, resource_type, id, body,
                                        validated=validated)
    except FhirError as error:
        reason = "; ".join(issue.diagnostics for issue in error.issues[:3])
        raise Rejected(f"{resource['resourceType']}/{resource['id']} made from this message "
                       f"is not valid FHIR: {reason}", location=location,
                       hl7_code="207") from error
    assert response.version is not None and response.last_updated is not None
    return response.version, response.last_updated, body


def _stored_contents(session: Session, keys: list[Key]
                     ) -> dict[Key, tuple[dict[str, Any], int, int]]:
    """The current content, version and ``lastUpdated`` of those of ``keys`` that exist
    (and are not deleted)."""
    ids: dict[str, list[str]] = {}
    for resource_type, id in keys:
        ids.setdefault(resource_type, []).append(id)
    found: dict[Key, tuple[dict[str, Any], int, int]] = {}
    for resource_type, wanted in ids.items():
        unique = sorted(set(wanted))
        for start in range(0, len(unique), IDS_PER_SEARCH):
            chunk = unique[start:start + IDS_PER_SEARCH]
            query = parse_criteria(resource_type, "_id=" + ",".join(chunk), session.registry)
            query.count = len(chunk)
            for match in session.search(query).matches:
                if match.content is not None:
                    found[(resource_type, match.id)] = (orjson.loads(match.content),
                                                        match.version, match.last_updated)
    return found


def _same(stored: dict[str, Any], resource: dict[str, Any]) -> bool:
    """Equal but for ``meta``: the same number of other keys, each of ``resource``'s
    equal in ``stored``. Compared in place, not through a copy of each without its
    ``meta`` (a monitor message compares about 17 unchanged Devices and DeviceMetrics:
    the copies were 2% of the MLLP committer's CPU)."""
    if len(stored) - ("meta" in stored) != len(resource) - ("meta" in resource):
        return False
    missing = _MISSING
    return all(key == "meta" or stored.get(key, missing) == value
               for key, value in resource.items())


_MISSING = object()
