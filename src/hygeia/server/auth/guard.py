"""Scope enforcement as a Session: every interaction runs on a guarded session.

The interaction code (read, search, write, conditional writes, Bundles,
``$everything``) is unchanged; it calls the same Session primitives, and the
guard answers each one only with what the token's scopes allow:

* ``current`` / ``version``: a resource outside the token's reach reads as
  absent (404, the spec prefers not to reveal that it exists); a type the
  token has no scope for at all is refused (403).  A write interaction is
  refused with 403 instead, so that an update cannot mistake an existing
  resource for a new one.
* ``search``: the token's restriction (the patient's compartment, a scope's
  ``?param=value``) is added to the query as more clauses, so totals and
  paging are exact.  Chained and ``_has`` parameters must name types the
  token may search, and a patient-bound token may not chain from a type
  outside the compartment (``Practitioner?_has:Observation:performer:subject=``
  would probe other patients' records).
* ``included``: ``_include`` / ``_revinclude`` results the token may not read
  are dropped.
* ``put``: the token needs the write action on the type; an existing resource
  must be within reach, and so must the new content (checked by a search in
  the same transaction, which rolls back on refusal).  A write allowed only
  through a patient's compartment must also leave the resource in no other
  patient's compartment: every Patient its compartment parameters reference
  (an Observation's ``subject``, ``patient``, ``performer``) must be that
  patient, read from the very index rows reads and ``$everything`` use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hygeia.fhir.outcome import Forbidden
from hygeia.fhir.search.parameters import SearchRegistry, default_registry
from hygeia.fhir.search.query import (
    ChainClause,
    Clause,
    CompartmentClause,
    HasClause,
    Query,
    parse_query,
)
from hygeia.fhir.search.results import Include
from hygeia.fhir.search.rows import IndexRows
from hygeia.fhir.spec import patient_compartment
from hygeia.server.auth.access import Access, Restriction
from hygeia.server.rest.router import SERVER_WRITTEN_TYPES
from hygeia.store import (
    Head,
    HistoryQuery,
    PreparedRows,
    Referrer,
    RowsSource,
    SearchPage,
    Session,
    StoredVersion,
)

# the cruds letter each interaction needs (writes decide between c and u at put)
ACTION = {
    "read": "r", "vread": "r", "history-instance": "r",
    "search-type": "s", "search-system": "s", "search-compartment": "s",
    "history-type": "s", "history-system": "s",
    "create": "c", "update": "u", "conditional-update": "u", "patch": "u",
    "conditional-patch": "u", "delete": "d", "conditional-delete": "d",
}
READ_ACTIONS = frozenset("rs")
_ID_CHUNK = 500


class GuardedSession(Session):
    """A Session that lets one token do only what its scopes allow (see module doc)."""

    def __init__(self, inner: Session, access: Access, interaction: str, *,
                 action: str | None = None, filter_types: bool = False) -> None:
        self.inner = inner
        self.access = access
        self.interaction = interaction
        self.action = action or ACTION.get(interaction, "r")
        self.filter_types = filter_types
        self.registry = inner.registry
        self.rows_later = inner.rows_later
        self.on_write = inner.on_write

    # ------------------------------------------------------------ reads

    def current(self, resource_type: str, id: str, *, for_update: bool = False
                ) -> StoredVersion | None:
        found = self.inner.current(resource_type, id, for_update=for_update)
        return self._screen(found, resource_type)

    def version(self, resource_type: str, id: str, version: int) -> StoredVersion | None:
        found = self.inner.version(resource_type, id, version)
        if found is None:
            return None
        current = self.current(resource_type, id)
        return found if current is not None else None

    def _screen(self, found: StoredVersion | None, resource_type: str) -> StoredVersion | None:
        """``found`` when the token may see it; None (or 403 for writes) when not."""
        if found is None and self.action not in READ_ACTIONS:
            return None  # a write decides at put whether it may create
        restrictions = self._restrictions(resource_type, self.action)
        if found is None:
            return None
        if found.deleted:
            # a deletion has no content left to place in a compartment
            return found if _unrestricted(restrictions) else None
        if self._reaches(resource_type, found.id, restrictions):
            return found
        if self.action in READ_ACTIONS:
            return None
        raise Forbidden(f"{resource_type}/{found.id} is outside what this access token may "
                        "change.", code="forbidden", expression=resource_type)

    def search(self, query: Query) -> SearchPage:
        if self.filter_types:  # e.g. $everything: what the token may read of the compartment
            query.types = tuple(t for t in query.types if self.access.allows(t, "s"))
        types = query.types or (query.resource_type,)
        restriction = self._one_restriction(types)
        self._check_clauses(query.clauses, restriction)
        query.clauses.extend(self._clauses(query.resource_type, types, restriction))
        return self.inner.search(query)

    def find_ids(self, query: Query) -> list[str]:
        return [match.id for match in self.search(query).matches]

    def included(self, owners: list[StoredVersion], include: Include,
                 reverse: bool, limit: int | None = None) -> list[StoredVersion]:
        found = self.inner.included(owners, include, reverse, limit)
        by_type: dict[str, list[StoredVersion]] = {}
        for stored in found:
            by_type.setdefault(stored.resource_type, []).append(stored)
        kept: set[tuple[str, str]] = set()
        for resource_type, group in by_type.items():
            restrictions = self.access.restrictions(resource_type, "r")
            ids = [stored.id for stored in group]
            kept.update((resource_type, id) for id in self._members(resource_type, ids,
                                                                    restrictions))
        return [stored for stored in found if (stored.resource_type, stored.id) in kept]

    def history(self, query: HistoryQuery) -> list[StoredVersion]:
        if query.resource_type is not None and query.id is not None:
            return self.inner.history(query)  # the handler read the resource through us
        if query.resource_type is not None:
            if not _unrestricted(self._restrictions(query.resource_type, "s")):
                raise _history_refused(query.resource_type)
            return self.inner.history(query)
        if self.access.bound_patient is not None:
            raise _history_refused("all types")
        versions = self.inner.history(query)
        return [v for v in versions
                if _unrestricted(self.access.restrictions(v.resource_type, "s"))]

    # ------------------------------------------------------------ writes

    def put(self, version: StoredVersion, rows: RowsSource) -> None:
        resource_type = version.resource_type
        if resource_type in SERVER_WRITTEN_TYPES:
            raise Forbidden(f"{resource_type} is written by the server alone and cannot be "
                            "created, changed or deleted through the API.", code="forbidden",
                            expression=resource_type)
        existing = self.inner.current(resource_type, version.id)
        exists = existing is not None and not existing.deleted
        action = "d" if version.deleted else ("u" if exists else "c")
        restrictions = self._restrictions(resource_type, action)
        if exists and not self._reaches(resource_type, version.id, restrictions):
            raise Forbidden(f"{resource_type}/{version.id} is outside what this access token "
                            "may change.", code="forbidden", expression=resource_type)
        if not version.deleted and not _unrestricted(restrictions):
            rows = self._one_patient_only(resource_type, rows, restrictions)
        self.inner.put(version, rows)
        if not version.deleted and not self._reaches(resource_type, version.id, restrictions):
            raise Forbidden(f"This access token may not write this {resource_type}: it would "
                            "fall outside the patient or the constraints the token's scopes "
                            "allow.", code="forbidden", expression=resource_type)

    def _one_patient_only(self, resource_type: str, rows: RowsSource,
                          restrictions: list[Restriction]) -> RowsSource:
        """Refuse content that would enter another patient's compartment (403).

        Applies when every way the token may write this type is bound to a
        patient; the rows are extracted here (not later in a batch) to be read.
        """
        patients = {r.patient for r in restrictions}
        if None in patients:
            return rows  # a constraint-only scope (a shared type): no compartment to keep
        if isinstance(rows, PreparedRows):
            raise Forbidden("A patient-bound token cannot write prepared index rows.",
                            code="forbidden", expression=resource_type)
        index = rows if isinstance(rows, IndexRows) else rows()
        params = set(patient_compartment().get(resource_type, ()))
        for param, target_type, target_id, _, _ in index.references:
            if param in params and target_type == "Patient" and target_id not in patients:
                element = _element(self.registry, resource_type, param)
                raise Forbidden(f"This access token is bound to Patient/"
                                f"{sorted(p for p in patients if p)[0]}, but {element} "
                                f"references Patient/{target_id}: a write may not place "
                                "the resource in another patient's record.",
                                code="forbidden", expression=element)
        return index

    # ------------------------------------------------------------ passed through

    def heads(self, keys: list[tuple[str, str]], *, for_update: bool = False,
              for_share: bool = False) -> dict[tuple[str, str], Head]:
        return self.inner.heads(keys, for_update=for_update, for_share=for_share)

    def referrers(self, targets: list[tuple[str, str]], base_url: str, limit: int
                  ) -> list[Referrer]:
        """Unscreened: referential integrity must see every referrer, in reach or not."""
        return self.inner.referrers(targets, base_url, limit)

    def flush(self) -> None:
        self.inner.flush()

    def lock(self, key: str) -> None:
        self.inner.lock(key)

    def reindex(self, keys: list[tuple[str, str]],
                index: Callable[[dict[str, Any]], IndexRows]) -> int:
        raise Forbidden("Reindexing is not an interaction of a guarded session.")

    def after_commit(self, action: Callable[[], None]) -> None:
        self.inner.after_commit(action)

    # ------------------------------------------------------------ the checks

    def _restrictions(self, resource_type: str, action: str) -> list[Restriction]:
        restrictions = self.access.restrictions(resource_type, action)
        if not restrictions:
            verb = {"c": "create", "r": "read", "u": "update", "d": "delete",
                    "s": "search"}[action]
            raise Forbidden(f"This access token does not allow to {verb} {resource_type} "
                            f"(scopes: {self.access.scopes.text or 'none'}).",
                            code="forbidden", expression=resource_type)
        return restrictions

    def _one_restriction(self, types: Iterable[str]) -> Restriction:
        """The restriction a search over ``types`` runs under: it must be one for all."""
        found: set[Restriction] = set()
        for resource_type in types:
            found.add(_merge(self._restrictions(resource_type, self.action), resource_type))
        if len(found) > 1:
            raise Forbidden("This access token reaches these types under different "
                            "restrictions; search them one type at a time.", code="forbidden",
                            expression="_type")
        return found.pop()

    def _check_clauses(self, clauses: Iterable[Clause], restriction: Restriction) -> None:
        """Chains and ``_has`` may only look into types the token may search, and not
        at all from an unrestricted type when the token is bound to one patient."""
        for clause in clauses:
            for target in _linked_types(clause):
                if (self.access.bound_patient is not None and restriction.patient is None):
                    raise Forbidden("A token bound to one patient may not chain from a "
                                    "type outside the patient's compartment.",
                                    code="forbidden", expression=target)
                self._restrictions(target, "s")

    def _clauses(self, resource_type: str, types: tuple[str, ...],
                 restriction: Restriction) -> list[Clause]:
        """The clauses that narrow a query over ``types`` to ``restriction``."""
        clauses: list[Clause] = []
        if restriction.patient is not None:
            compartment = patient_compartment()
            params = sorted({code for t in types for code in compartment.get(t, ())})
            clauses.append(CompartmentClause("Patient", restriction.patient, tuple(params)))
        if restriction.constraints:
            narrowed = parse_query(resource_type, restriction.constraints, strict=True,
                                   registry=self.registry)
            clauses.extend(narrowed.clauses)
        return clauses

    def _reaches(self, resource_type: str, id: str, restrictions: list[Restriction]) -> bool:
        return bool(self._members(resource_type, [id], restrictions))

    def _members(self, resource_type: str, ids: list[str],
                 restrictions: list[Restriction]) -> set[str]:
        """Those of ``ids`` (current resources of one type) some restriction reaches."""
        if _unrestricted(restrictions):
            return set(ids)
        found: set[str] = set()
        for restriction in restrictions:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = [id for id in ids[start:start + _ID_CHUNK] if id not in found]
                if chunk:
                    found.update(self._matching(resource_type, chunk, restriction))
        return found

    def _matching(self, resource_type: str, ids: list[str],
                  restriction: Restriction) -> list[str]:
        query = parse_query(resource_type, [("_id", ",".join(ids))], max_count=len(ids),
                            registry=self.registry)
        query.options.count = len(ids)
        query.clauses.extend(self._clauses(resource_type, (resource_type,), restriction))
        return [match.id for match in self.inner.search(query).matches]


def _element(registry: SearchRegistry | None, resource_type: str, param: str) -> str:
    """The element a compartment parameter reads (``Observation.performer``), for the
    OperationOutcome's expression; the parameter's name when it has no expression."""
    parameter = (registry or default_registry()).get(resource_type, param)
    expression = parameter.expression if parameter is not None else None
    if not expression:
        return f"{resource_type}.{param}"
    mine = [part.strip() for part in expression.split("|")
            if part.strip().startswith(f"{resource_type}.")]
    return " | ".join(mine) or expression


def _unrestricted(restrictions: list[Restriction]) -> bool:
    return any(r.unrestricted for r in restrictions)


def _merge(restrictions: list[Restriction], resource_type: str) -> Restriction:
    """One restriction equivalent to any of ``restrictions`` (a search needs one).

    Alternatives that differ only in the values of one parameter become one
    parameter with a value list (``category=a`` or ``category=b`` is
    ``category=a,b``); others cannot be one search, and are refused.
    """
    if len(restrictions) == 1:
        return restrictions[0]
    patients = {r.patient for r in restrictions}
    shapes = {tuple(name for name, _ in r.constraints) for r in restrictions}
    if len(patients) == 1 and len(shapes) == 1 and len(next(iter(shapes))) == 1:
        name = next(iter(shapes))[0]
        values = ",".join(dict.fromkeys(r.constraints[0][1] for r in restrictions))
        return Restriction(patients.pop(), ((name, values),))
    unconstrained = [r for r in restrictions if not r.constraints]
    if len(unconstrained) == 1:
        return unconstrained[0]
    raise Forbidden(f"This access token reaches {resource_type} through several scopes "
                    "with different constraints; add one scope's constraint to the search.",
                    code="forbidden", expression=resource_type)


def _linked_types(clause: Clause) -> list[str]:
    """Every type a chain or ``_has`` clause looks into, nested ones included."""
    if isinstance(clause, ChainClause):
        return [t for target, inner in clause.alternatives
                for t in (target, *_linked_types(inner))]
    if isinstance(clause, HasClause):
        return [clause.source_type, *_linked_types(clause.inner)]
    return []


def _history_refused(what: str) -> Forbidden:
    return Forbidden(f"History of {what} is open only to tokens that may search the whole "
                     "type; search with _lastUpdated instead.", code="forbidden",
                     expression="_history")


def guarded(session: Session, access: Access | None, interaction: str, *,
            action: str | None = None, filter_types: bool = False) -> Session:
    """``session`` itself when there is no token (auth off), else a guarded view of it.

    ``action`` (an operation's cruds letter) overrides the interaction's own;
    ``filter_types`` makes a search over several types keep only the readable ones.
    """
    if access is None:
        return session
    return GuardedSession(session, access, interaction, action=action,
                          filter_types=filter_types)
