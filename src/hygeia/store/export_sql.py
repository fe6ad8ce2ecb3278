"""Bulk export reads: one resource type, in key order, as it stood at one instant.

An export walks ``resource`` by ``(res_type, pk)`` in batches, so it can stop
after any batch and resume from the last key (a restarted server continues a
half-done export).  Every resource is written as the version that was
current at the export's ``transactionTime``: a resource changed since then
is looked up in ``resource_version``, and one created since then is left
out, so the files describe one instant however long the export runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hygeia.fhir.search.query import Query
from hygeia.store.search_sql import SqlBuilder, where_sql


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


@dataclass(frozen=True, slots=True)
class ExportRow:
    pk: int
    content: bytes


def export_batch(session: Any, part: ExportSlice, after: int, limit: int) -> tuple[
        list[ExportRow], int | None]:
    """Up to ``limit`` resources after key ``after``, and the key to continue from.

    The key is None when the type is exhausted.  Fewer than ``limit`` rows may
    come back while more remain (rows changed after ``until`` can drop out).
    """
    builder = SqlBuilder(session.registry)
    conditions = [f"r.res_type = {builder.value(part.resource_type)}",
                  f"r.pk > {builder.value(after)}",
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
    sql, params = builder.render(
        "SELECT r.pk, r.res_id, r.last_updated, r.deleted, v.content FROM resource r "
        f"JOIN resource_version v ON v.seq = r.seq WHERE {' AND '.join(conditions)} "
        # (res_type, pk) order is the index order: the plan walks resource_type_pk
        f"ORDER BY r.res_type, r.pk LIMIT {int(limit)}")
    rows = session.fetch_binary(sql, params)
    found = []
    for pk, res_id, last_updated, deleted, content in rows:
        if int(last_updated) > part.until:
            content = _version_at(session, part, res_id)
        elif deleted:
            content = None
        if content is not None:
            found.append(ExportRow(int(pk), bytes(content)))
    more = len(rows) == limit
    return found, (int(rows[-1][0]) if more else None)


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


def _version_at(session: Any, part: ExportSlice, res_id: str) -> bytes | None:
    """The content current at ``part.until`` (None: not yet created, or deleted, then)."""
    rows = session.execute(
        "SELECT content, deleted, last_updated FROM resource_version WHERE res_type = ? "
        "AND res_id = ? AND last_updated <= ? ORDER BY version DESC LIMIT 1",
        (part.resource_type, res_id, part.until)).fetchall()
    if not rows or rows[0][1] or rows[0][0] is None:
        return None
    if part.since is not None and int(rows[0][2]) < part.since:
        return None
    return bytes(rows[0][0])
