"""Bulk export reads: one resource type, in key order, as it stood at one instant.

An export walks ``resource`` by ``(res_type, pk)``, a bounded number of rows
per query, so it can stop after any row and resume from the last key (a
restarted server continues a half-done export).  Every resource is written as
the version that was current at the export's ``transactionTime``: a resource
changed since then is looked up in ``resource_version``, and one created since
then is left out, so the files describe one instant however long the export
runs.  The query does that choice itself (:func:`export_query`), so a backend
can stream its rows (PostgreSQL: ``COPY``) without a second query per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hygeia.fhir.search.query import Query
from hygeia.store.search_sql import SqlBuilder, where_sql

# (key, content): content is None for a key walked past but not exported (deleted,
# or not yet created, at the export's instant), so the walk can still resume after it
ExportRow = tuple[int, bytes | memoryview | None]


@dataclass(frozen=True, slots=True)
class ExportSlice:
    """What one type's part of an export selects.

    ``until``: the export's transactionTime (versions current at that instant);
    ``since``: only versions written at or after it.  ``compartment``: the
    Patient-compartment parameters of the type, set for patient and group
    exports; the resource must then be in the compartment of one of
    ``patients`` (of any Patient when None).  ``filters``: ``_typeFilter``
    queries, any of which may match.
    """

    resource_type: str
    until: int
    since: int | None = None
    compartment: tuple[str, ...] | None = None
    patients: tuple[str, ...] | None = None
    filters: tuple[Query, ...] = field(default_factory=tuple)


def export_query(session: Any, part: ExportSlice, after: int, limit: int
                 ) -> tuple[str, list[Any]]:
    """SQL for up to ``limit`` keys after ``after``, each with the content to export.

    Rows come as (pk, content) in key order; content is NULL where the resource
    is not exported (see :data:`ExportRow`).  A run of fewer than ``limit`` rows
    means the type is exhausted.

    The content is a scalar subquery rather than a join: with a join and a large
    ``limit`` PostgreSQL chose a hash join over all of ``resource_version`` and
    sorted the result (the 1 KB contents included) instead of walking the key
    index.  The key bound is the backend's (``export_key_bound``).
    """
    builder = SqlBuilder(session.registry)
    kind = builder.value(part.resource_type)
    conditions = [f"r.res_type = {kind}",
                  session.export_key_bound(kind, builder.value(after)),
                  # deleted now but perhaps not at `until`: its older version decides
                  f"(r.deleted = {builder.value(False)} OR r.last_updated > "
                  f"{builder.value(part.until)})"]
    if part.since is not None:
        conditions.append(f"r.last_updated >= {builder.value(part.since)}")
    if part.compartment is not None:
        conditions.append(_in_compartment(session, builder, part))
    if part.filters:
        types = (part.resource_type,)
        conditions.append("(" + " OR ".join(
            f"({where_sql(builder, types, query.clauses)})" for query in part.filters) + ")")
    return builder.render(
        f"SELECT r.pk, {_content_at(builder, part)} FROM resource r "
        f"WHERE {' AND '.join(conditions)} "
        # (res_type, pk) order is the index order: the plan walks resource_type_pk
        f"ORDER BY r.res_type, r.pk LIMIT {int(limit)}")


def _content_at(builder: SqlBuilder, part: ExportSlice) -> str:
    """The bytes current at ``part.until``, NULL if deleted or not yet created then.

    Unchanged since (nearly every row): the current version's bytes.  Changed
    since: the latest version written by ``until``, also NULL when it is older
    than ``since``.
    """
    until = builder.value(part.until)
    too_old = "" if part.since is None else f" OR o.last_updated < {builder.value(part.since)}"
    return (f"CASE WHEN r.last_updated <= {until} THEN CASE WHEN r.deleted THEN NULL ELSE "
            "(SELECT v.content FROM resource_version v WHERE v.seq = r.seq) END "
            f"ELSE (SELECT CASE WHEN o.deleted{too_old} THEN NULL ELSE o.content END "
            "FROM resource_version o WHERE o.res_type = r.res_type AND o.res_id = r.res_id "
            f"AND o.last_updated <= {until} ORDER BY o.version DESC LIMIT 1) END")


def _in_compartment(session: Any, builder: SqlBuilder, part: ExportSlice) -> str:
    """The resource is in some (or one of the named) patients' compartment."""
    if part.resource_type == "Patient":
        if part.patients is None:
            return "1 = 1"
        return session.id_list_condition(builder, "r.res_id", list(part.patients))
    assert part.compartment is not None
    if not part.compartment:
        return "1 = 0"
    types = (part.resource_type,)
    matches = " OR ".join(builder.param_match("ri", types, code) for code in part.compartment)
    target = ""
    if part.patients is not None:
        target = " AND " + session.id_list_condition(builder, "ri.target_id",
                                                     list(part.patients))
    return (f"EXISTS (SELECT 1 FROM reference_index ri WHERE ri.res_pk = r.pk AND ({matches}) "
            f"AND ri.target_type = {builder.value('Patient')}{target})")
