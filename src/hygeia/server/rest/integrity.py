"""Referential integrity (``hygeia serve --referential-integrity``; docs/adr/0007).

When it is on, a write transaction keeps an :class:`IntegrityCheck` that
learns of every version the interactions write (``Session.on_write``) and,
just before commit, holds them to two rules:

* every *local* reference of a written resource resolves to a current,
  not-deleted resource (422 naming the reference and where it is).  Local is
  ``Type/id`` (optionally ``/_history/v``) or an absolute URL under this
  server's FHIR base; ``#contained``, ``urn:`` and other servers' URLs are not
  checked.  Resources written in the same transaction count, so entries of a
  transaction Bundle may refer to each other.
* no current resource still references a resource deleted by the transaction
  (409 naming a few referrers), unless the delete asked for
  ``_cascade=delete`` (:func:`delete_referrers`), a HAPI FHIR convention.

Checking everything once, at the end, is what makes a Bundle's order free.
The targets are share-locked (``heads(for_share=True)``), so a delete of one
running at the same moment either waits for this commit and then sees the new
referrer, or commits first and this check sees the deletion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hygeia.fhir.outcome import BadRequest, Conflict, Issue, Unprocessable
from hygeia.fhir.search.extract.references import parse_reference
from hygeia.server.rest import write
from hygeia.store import Session, StoredVersion

CASCADE_LIMIT = 1000  # resources one _cascade=delete may delete besides its target
NAMED_REFERRERS = 5  # referrers named in a 409 (a count could be costly; a few suffice)
MAX_REPORTED = 20  # dangling references reported in one 422

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class LocalReference:
    """A reference to a resource on this server, and where it sits in its resource."""

    target: Key
    text: str
    expression: str  # FHIRPath-like: ``Observation.performer[1]``


def local_target(text: str, base_url: str) -> Key | None:
    """The (type, id) a reference names on this server, else None.

    >>> local_target("Patient/1/_history/2", "http://h/fhir/")
    ('Patient', '1')
    >>> local_target("http://other/fhir/Patient/1", "http://h/fhir/") is None
    True
    """
    if text.startswith(("#", "urn:")):
        return None
    parsed = parse_reference(text)
    if parsed is None:
        return None
    kind, id, url, _ = parsed
    if kind is None or id is None or (url is not None and url != f"{base_url}{kind}/{id}"):
        return None
    return kind, id


def local_references(resource: dict[str, Any], base_url: str) -> list[LocalReference]:
    """Every local reference in ``resource`` (contained resources included)."""
    found: list[LocalReference] = []
    _walk(resource, str(resource.get("resourceType", "Resource")), base_url, found)
    return found


def _walk(node: dict[str, Any], path: str, base_url: str, found: list[LocalReference]
          ) -> None:
    for key, value in node.items():
        if type(value) is dict:
            _walk(value, f"{path}.{key}", base_url, found)
        elif type(value) is list:
            for index, item in enumerate(value):
                if type(item) is dict:
                    _walk(item, f"{path}.{key}[{index}]", base_url, found)
        elif key == "reference" and type(value) is str:
            target = local_target(value, base_url)
            if target is not None:
                found.append(LocalReference(target, value, path))


@dataclass
class IntegrityCheck:
    """The writes of one transaction, checked together by :meth:`verify` before commit.

    ``locations`` maps a written resource to where the client sent it (a Bundle
    entry), so that errors point there instead of at the bare resource.
    """

    base_url: str
    written: dict[Key, list[LocalReference]] = field(default_factory=dict)
    deleted: set[Key] = field(default_factory=set)
    locations: dict[Key, str] = field(default_factory=dict)

    def record(self, stored: StoredVersion, resource: dict[str, Any] | None) -> None:
        """``Session.on_write``: note a written version (``resource`` None: a deletion)."""
        key = (stored.resource_type, stored.id)
        if resource is None:
            self.written.pop(key, None)
            self.deleted.add(key)
        else:
            self.deleted.discard(key)
            self.written[key] = local_references(resource, self.base_url)

    def verify(self, session: Session) -> None:
        """422 for a dangling reference, 409 for a deleted resource still referenced."""
        self._check_targets(session)
        self._check_referrers(session)
        self.written.clear()  # verified: a second call checks only later writes
        self.deleted.clear()

    def _check_targets(self, session: Session) -> None:
        targets = sorted({ref.target for refs in self.written.values() for ref in refs})
        if not targets:
            return
        heads = session.heads(targets, for_share=True)
        alive = {key for key, head in heads.items() if not head.deleted}
        dangling = [(source, ref) for source, refs in self.written.items() for ref in refs
                    if ref.target not in alive]
        if dangling:
            raise Unprocessable(issues=[self._dangling_issue(source, ref, heads)
                                        for source, ref in dangling[:MAX_REPORTED]])

    def _dangling_issue(self, source: Key, ref: LocalReference, heads: dict[Key, Any]
                        ) -> Issue:
        kind, id = ref.target
        state = "was deleted" if (kind, id) in heads else "does not exist"
        return Issue("processing", f"{source[0]}/{source[1]} refers to {kind}/{id} "
                     f"('{ref.text}' at {ref.expression}), which {state} on this server; "
                     "the server enforces referential integrity.",
                     self._where(source, ref.expression))

    def _check_referrers(self, session: Session) -> None:
        if not self.deleted:
            return
        found = session.referrers(sorted(self.deleted), self.base_url, NAMED_REFERRERS + 1)
        if not found:
            return
        target = found[0].target
        names = [f"{r.source[0]}/{r.source[1]}" for r in found[:NAMED_REFERRERS]]
        more = " and more" if len(found) > NAMED_REFERRERS else ""
        raise Conflict(issues=[Issue(
            "conflict", f"{target[0]}/{target[1]} cannot be deleted: {', '.join(names)}{more} "
            "refer to it. Change or delete those first, or delete with ?_cascade=delete to "
            "delete them too.", self._where(target, target[0]))])

    def _where(self, key: Key, expression: str) -> str:
        """``expression`` re-anchored at the Bundle entry that sent ``key``, if any."""
        entry = self.locations.get(key)
        if entry is None:
            return expression
        rest = expression.partition(".")[2]
        return f"{entry}.resource.{rest}" if rest else entry


def delete_referrers(session: Session, root: Key, base_url: str,
                     limit: int = CASCADE_LIMIT) -> int:
    """``_cascade=delete``: delete, recursively, every current resource that references
    ``root`` (already deleted in ``session``); returns how many.

    More than ``limit`` is refused (422 ``too-costly``) and, the transaction rolling
    back, deletes nothing: one request must not empty a database.  Each round asks
    for the referrers of the resources the previous round deleted; a round cut short
    by the limit asks again for the same targets (deleted referrers leave the index).
    """
    targets, deleted = [root], 0
    while targets:
        room = limit - deleted + 1
        found = session.referrers(targets, base_url, room)
        sources = sorted({referrer.source for referrer in found})
        if deleted + len(sources) > limit:
            raise Unprocessable(
                f"Deleting {root[0]}/{root[1]} with _cascade=delete would delete more than "
                f"{limit:,} referring resources; delete them in smaller parts first.",
                expression="_cascade", code="too-costly")
        for kind, id in sources:
            write.delete(session, kind, id)
        deleted += len(sources)
        targets = [*targets, *sources] if len(found) >= room else sources
    return deleted


def cascade_requested(query: list[tuple[str, str]], enforced: bool) -> bool:
    """Whether a delete carries ``_cascade=delete`` (400 for another value, or when the
    server does not enforce referential integrity)."""
    values = [value for name, value in query if name == "_cascade"]
    if not values:
        return False
    if values != ["delete"]:
        raise BadRequest(f"_cascade must be 'delete', not {', '.join(values)!r}.",
                         expression="_cascade")
    if not enforced:
        raise BadRequest("_cascade=delete needs a server that enforces referential "
                         "integrity (hygeia serve --referential-integrity); without it a "
                         "delete leaves referring resources as they are.",
                         expression="_cascade")
    return True


def without_cascade(query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A conditional delete's criteria without the ``_cascade`` instruction."""
    return [(name, value) for name, value in query if name != "_cascade"]
