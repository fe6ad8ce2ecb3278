"""Direct tests of the search SQL builder (store/search_sql.py).

The store and HTTP search tests (and the oracle) hold its results to the matcher;
these hold the SHAPE of what it writes: which index table each clause reads,
how many subqueries it nests, how values are bound (never spliced into the SQL
text), and that the statements it builds run on both SQLite and PostgreSQL.
Statements are built the way ``store/sql.py`` builds them: ``parse_query``, then
``where_sql`` / ``order_keys`` / ``after_cursor`` / ``key_bound_sql`` /
``key_range_sql`` on one :class:`SqlBuilder`, then ``render``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.query import (
    CompartmentClause,
    ParameterClause,
    SearchLimits,
    parse_query,
)
from hygeia.store import Repository, StoredVersion
from hygeia.store.postgres.repository import PostgresSession
from hygeia.store.schema import PREFIX_CHARS
from hygeia.store.search_sql import (
    TOP,
    SqlBuilder,
    after_cursor,
    driving_clause,
    key_bound_sql,
    key_range_sql,
    order_keys,
    where_sql,
)
from hygeia.store.sql import SqlSession

DAY = 86_400_000_000  # microseconds, the unit of stored dates
HOSTILE = "x' OR 1=1 --"
LONG = "L" * 300  # longer than the indexed prefix of text columns


@dataclass(frozen=True)
class Built:
    """One rendered statement: SQL text with ``?`` placeholders and its parameters."""

    sql: str
    params: list[Any]

    def tables(self) -> list[str]:
        """Index tables read, once per reading (a table read twice is listed twice)."""
        return sorted(re.findall(r"FROM (\w+_index) ", self.sql))

    def subqueries(self) -> int:
        return self.sql.count("SELECT") - 1

    def exists(self) -> int:
        return len(re.findall(r"(?<!NOT )EXISTS \(", self.sql))

    def not_exists(self) -> int:
        return self.sql.count("NOT EXISTS (")

    def driven(self) -> int:
        """``r.pk IN (subquery)`` lookups at the top level (the driving clause)."""
        return self.sql.count("r.pk IN (SELECT")


def build(resource_type: str, query: str, select: str = "r.res_id",
          registry: Any = None) -> Built:
    """The statement ``store/sql.py`` runs to count or page a search, as text and params.

    ``resource_type`` may list several types (``Patient,Group``: a ``_type`` search).
    """
    types = tuple(resource_type.split(","))
    parsed = parse_query(types[0], parse_qsl(query, keep_blank_values=True),
                         strict=True, registry=registry)
    builder = SqlBuilder(registry)
    sql, params = builder.render(
        f"SELECT {select} FROM resource r WHERE {where_sql(builder, types, parsed.clauses)}")
    return Built(sql, params)


def assert_well_formed(built: Built) -> None:
    """Every value is a placeholder: as many ``?`` as parameters, no marker left, no
    quote but the builder's own literals (``''`` and ``ESCAPE '\\'``), no ``%``."""
    assert built.sql.count("?") == len(built.params)
    assert "\x00" not in built.sql
    assert "'" not in built.sql.replace("''", "").replace("ESCAPE '\\'", "")
    assert "%" not in built.sql  # psycopg would read it as a placeholder


# --- shape: one case per parameter type and modifier ------------------------------------

SHAPES = [
    # (type, query, index tables read, driving lookups, EXISTS, NOT EXISTS)
    ("Patient", "name=eve", ["string_index"], 1, 0, 0),
    ("Patient", "name:exact=Eve", ["string_index"], 1, 0, 0),
    ("Patient", "name:contains=v_%", ["string_index"], 1, 0, 0),
    ("Patient", "name=eve,bob", ["string_index"], 1, 0, 0),
    ("Patient", "identifier=urn:s|1,urn:s|2", ["token_index", "token_index"], 1, 1, 0),
    ("Patient", "gender=female", ["token_index", "token_index"], 1, 1, 0),
    ("Patient", "gender:not=male", ["token_index"], 0, 0, 1),
    ("Patient", "gender:text=fem", ["token_index"], 1, 0, 0),
    ("Patient", "gender:missing=true", ["token_index"], 0, 0, 1),
    ("Patient", "gender:missing=false", ["token_index"], 1, 0, 0),
    ("Observation", "subject=Patient/p1", ["reference_index"], 1, 0, 0),
    ("Observation", "subject:Patient.name=eve", ["reference_index", "string_index"], 1, 0, 0),
    ("Observation", "subject:Patient.organization.name=acme",
     ["reference_index", "reference_index", "string_index"], 1, 0, 0),
    ("Patient", "_has:Observation:patient:code=urn:x|k1",
     ["reference_index", "token_index"], 0, 0, 0),
    ("Patient", "birthdate=ge1970-01&birthdate=lt1980", ["date_index", "date_index"], 1, 1, 0),
    ("RiskAssessment", "probability=gt0.5", ["number_index"], 1, 0, 0),
    ("Observation", "value-quantity=le5.4|http://unitsofmeasure.org|mg", ["quantity_index"],
     1, 0, 0),
    ("Patient", "_profile=http://x.org/p", ["uri_index"], 1, 0, 0),
    ("Patient", "_profile:below=http://x.org/", ["uri_index"], 1, 0, 0),
    ("Observation", "code-value-quantity=urn:x|k1$gt5",
     ["composite_index", "composite_index"], 1, 1, 0),
    ("Patient", "_id=a,b", [], 0, 0, 0),
    ("Patient", "_lastUpdated=gt2020-01-01", [], 0, 0, 0),
    ("Patient", "name=eve&gender=female&birthdate=ge1970",
     ["date_index", "string_index", "token_index", "token_index"], 1, 3, 0),
]


@pytest.mark.parametrize(("kind", "query", "tables", "driven", "exists", "not_exists"),
                         SHAPES, ids=[s[1] for s in SHAPES])
def test_each_clause_reads_its_index_table(kind: str, query: str, tables: list[str],
                                           driven: int, exists: int, not_exists: int) -> None:
    built = build(kind, query)
    assert_well_formed(built)
    assert built.tables() == tables
    assert (built.driven(), built.exists(), built.not_exists()) == (driven, exists, not_exists)
    if isinstance(driving_clause(parse_query(kind, parse_qsl(query)).clauses), ParameterClause):
        # a parameter drives: index rows are of current, undeleted resources of its type
        assert "res_type" not in built.sql.partition("r.pk IN")[0]
        assert "r.deleted" not in built.sql
    else:  # the type and the deletion flag, bound too
        assert built.params[:2] == [kind, False]


def test_a_search_over_several_types_reads_the_rows_of_each() -> None:
    built = build("Patient,Practitioner", "name=eve")
    assert_well_formed(built)
    assert "res_type" not in built.sql  # the parameter's rows name their types
    assert "i1.h_param IN (?, ?)" in built.sql
    assert len(set(built.params[:2])) == 2  # each type's own parameter hash
    assert "r.res_type IN (?, ?)" in build("Patient,Practitioner", "_id=a").sql


def test_one_clause_drives_and_the_others_are_checked_per_row() -> None:
    """The most selective clause (token over date) is the ``pk IN`` lookup; a
    clause without a lookup (``:not``) leaves the type test indexable."""
    built = build("Patient", "birthdate=ge1970&gender=female")
    driving = built.sql.partition("EXISTS")[0]
    assert "token_index k WHERE k.h_code IN (?)" in driving
    assert "date_index" in built.sql.partition("EXISTS")[2]
    assert "res_type" not in built.sql  # the keys of a parameter's rows are of its type
    assert "(r.res_type || '') IN (?)" in build("Patient", "general-practitioner:"
                                                           "Practitioner.name=x").sql
    assert "r.res_type IN (?)" in build("Patient", "gender:not=male").sql


def test_values_of_one_parameter_are_or_and_parameters_are_and() -> None:
    one = build("Patient", "name=eve,bob,ann")
    assert one.subqueries() == 1
    assert one.sql.count(") OR (") == 2
    assert {"eve", "bob", "ann"} <= set(one.params)
    both = build("Patient", "name=eve&name=bob")
    assert both.subqueries() == 2 and ") OR (" not in both.sql
    assert " AND EXISTS (" in both.sql


@pytest.mark.parametrize(("query", "expected"), [
    ("name=Eve", ["eve", "eve" + TOP]),  # normalised, then a starts-with range
    ("name:exact=Eve", ["Eve"]),
    ("name:contains=v_%", ["%v\\_\\%%"]),  # LIKE wildcards of the value escaped
    ("gender:text=Fem", ["fem", "fem" + TOP]),
    ("identifier=urn:s|1", ["1", "urn:s"]),
    ("identifier=|1", ["1"]),
])
def test_string_and_token_values_are_bound_as_matched(query: str, expected: list[str]) -> None:
    built = build("Patient", query)
    texts = [p for p in built.params if isinstance(p, str) and p not in ("Patient",)]
    assert texts == expected


def test_token_modifiers_pick_their_columns() -> None:
    assert "i1.text IS NOT NULL AND substr(i1.text, 1, 256) >= ?" in \
        build("Patient", "gender:text=fem").sql
    assert "i1.system IS NULL" in build("Patient", "identifier=|1").sql
    missing = build("Patient", "gender:missing=true").sql
    assert "NOT EXISTS (SELECT 1 FROM token_index i1 WHERE i1.res_pk = r.pk" in missing
    assert "(i1.system IS NOT NULL OR i1.code IS NOT NULL)" in missing
    assert "LIKE ? ESCAPE '\\'" in build("Patient", "name:contains=v").sql


def test_text_longer_than_the_indexed_prefix_is_compared_whole_too() -> None:
    """Long text columns are indexed by their first PREFIX_CHARS characters: a longer
    value fixes the whole prefix, then the column itself decides."""
    long = "l" * (PREFIX_CHARS + 10)
    starts = build("Patient", f"name={long}")
    assert "substr(i1.norm, 1, 256) = ? AND i1.norm >= ? AND i1.norm < ?" in starts.sql
    assert starts.params[1:] == [long[:PREFIX_CHARS], long, long + TOP]
    exact = build("Patient", f"name:exact={long}")
    assert "substr(i1.exact" not in exact.sql and exact.params[1:] == [long]
    uri = build("Patient", f"_profile=http://x.org/{long}")
    assert "substr(i1.uri, 1, 256) = ? AND i1.uri = ?" in uri.sql
    assert uri.params[1:] == [f"http://x.org/{long}"[:PREFIX_CHARS], f"http://x.org/{long}"]


def test_token_value_sets_bind_each_system_and_code() -> None:
    """``:in`` is one IN over (system, code) pairs plus the bare codes (a ``code``
    element has no system); ``:not-in`` is the same test under NOT EXISTS."""
    statuses = "http://hl7.org/fhir/ValueSet/observation-status"
    within = build("Observation", f"status:in={statuses}")
    codes = within.sql.count("(?, ?)")
    assert codes == 8 and "IN (VALUES (?, ?), " in within.sql
    assert "(i1.system IS NULL AND i1.code IN (?" in within.sql
    assert len(within.params) == 1 + 3 * codes
    outside = build("Observation", f"status:not-in={statuses}")
    assert outside.not_exists() == 1 and outside.driven() == 0
    assert outside.params[3:] == within.params[1:]


def test_token_and_reference_modifiers_on_the_token_table() -> None:
    """``:of-type`` and a reference's ``:identifier`` read token rows stored under
    their own parameter (``identifier:of-type``, ``subject:identifier``)."""
    typed = build("Patient", "identifier:of-type="
                  "http://terminology.hl7.org/CodeSystem/v2-0203|MR|123")
    assert typed.tables() == ["token_index"]
    assert "i1.system = ? AND i1.code = ?" in typed.sql
    assert typed.params[1:] == ["http://terminology.hl7.org/CodeSystem/v2-0203", "MR|123"]
    identified = build("Observation", "subject:identifier=urn:s|1")
    assert identified.tables() == ["token_index"]
    assert identified.params[-2:] == ["1", "urn:s"]
    assert identified.params[0] != build("Observation", "code=urn:s|1").params[0]


def test_reference_binds_type_and_id() -> None:
    built = build("Observation", "subject=Patient/p1")
    assert "i1.target_type = ? AND i1.target_id = ?" in built.sql
    assert built.params[-2:] == ["Patient", "p1"]
    absolute = build("Observation", "subject=http://other.org/fhir/Patient/p1")
    assert "(i1.url = ? OR (i1.target_type = ? AND i1.target_id = ?))" in absolute.sql
    assert absolute.params[-3:] == ["http://other.org/fhir/Patient/p1", "Patient", "p1"]


def test_local_references_to_one_type_are_one_id_list() -> None:
    """``patient=Patient/1,...,Patient/200`` is one ``target_id IN`` list, not an OR arm
    per patient: PostgreSQL planned 200 arms for longer than it ran them (the NEWS2
    engine's searches of a batch's patients)."""
    driving = build("Observation", "patient=Patient/p1,Patient/p2,Patient/p3")
    assert " OR " not in driving.sql
    assert "i1.target_type = ? AND i1.target_id IN (?, ?, ?)" in driving.sql
    assert driving.params[-4:] == ["Patient", "p1", "p2", "p3"]
    checked = build("Observation", "code=urn:x|k1&subject:Patient=p1,p2")
    assert "i2.target_type = ? AND i2.target_id IN (?, ?))" in checked.sql
    assert_well_formed(checked)
    # two types, an absolute URL or a bare id: one arm each, as before
    for query in ("subject=Patient/p1,Group/g1", "subject=Patient/p1,http://x.org/Patient/p2",
                  "patient=p1,Patient/p2"):
        assert build("Observation", query).sql.count(") OR (") == 1, query


def test_a_shared_reference_parameter_reads_its_source_rows_by_target_type() -> None:
    """Observation ``patient`` has no rows of its own: it is ``subject`` pointing at a
    Patient (extract/shared.py), so it matches subject's rows narrowed by target type.
    ``_include`` and ``_revinclude`` (store/sql.py ``SqlSession.included``) use this
    same :meth:`SqlBuilder.param_match`."""
    builder = SqlBuilder()
    sql, params = builder.render(builder.param_match("ri", ("Observation",), "patient"))
    assert sql == "(ri.h_param = ? AND ri.target_type = ?)"
    plain = SqlBuilder()
    subject, subject_params = plain.render(plain.param_match("ri", ("Observation",), "subject"))
    assert subject == "ri.h_param IN (?)"
    assert params == [subject_params[0], "Patient"]
    both = SqlBuilder()
    sql, params = both.render(both.param_match("ri", ("Observation", "Condition"), "patient"))
    assert sql.count("ri.target_type = ?") == 2 and " OR " in sql


def test_an_untyped_chain_has_one_alternative_per_target_type() -> None:
    """``subject.name``: every target type of Observation.subject that has ``name``."""
    typed = build("Observation", "subject:Patient.name=eve")
    untyped = build("Observation", "subject.name=eve")
    arms = untyped.sql.count("FROM resource t")
    assert typed.sql.count("FROM resource t") == 1 and arms > 1
    assert untyped.sql.count(".target_type = ?)") == arms
    assert untyped.tables().count("string_index") == arms


def test_chain_depth_nests_one_resource_subquery_per_step() -> None:
    for depth, query in enumerate(("subject:Patient.name=x",
                                   "subject:Patient.organization.name=x",
                                   "subject:Patient.organization.partof.name=x"), start=1):
        built = build("Observation", query)
        assert_well_formed(built)
        assert built.sql.count("FROM resource t") == depth
        assert built.tables().count("reference_index") == depth


def test_has_selects_targets_of_matching_sources() -> None:
    built = build("Patient", "_has:Observation:patient:code=urn:x|k1")
    assert "(r.res_type, r.res_id) IN (SELECT hs1.target_type, hs1.target_id " \
           "FROM reference_index hs1" in built.sql
    assert "hs1.res_pk IN (SELECT i3.res_pk FROM token_index i3" in built.sql
    assert "hs1.target_type IN (?)" in built.sql  # only references to this search's types
    assert built.params[-2:] == ["k1", "urn:x"]


@pytest.mark.parametrize(("prefix", "condition", "bound"), [
    # search 1970-01 is [sl, sh) = [0, 31 days); stored rows are [low, high)
    ("eq", r"\(i1\.low >= \? AND i1\.high <= \?\)", [0, 31 * DAY]),
    ("ne", r"NOT \(i1\.low >= \? AND i1\.high <= \?\)", [0, 31 * DAY]),
    ("gt", r"i1\.high > \?", [31 * DAY]),
    ("lt", r"i1\.low < \?", [0]),
    ("ge", r"\(i1\.high > \? OR \(i1\.low >= \? AND i1\.high <= \?\)\)", [31 * DAY, 0, 31 * DAY]),
    ("le", r"\(i1\.low < \? OR \(i1\.low >= \? AND i1\.high <= \?\)\)", [0, 0, 31 * DAY]),
    ("sa", r"i1\.low >= \?", [31 * DAY]),
    ("eb", r"i1\.high <= \?", [0]),
    # ap: widened by 10% of the range (at least a day) each way
    ("ap", r"\(i1\.low < \? AND i1\.high > \?\)", [31 * DAY + 31 * DAY // 10, -(31 * DAY // 10)]),
])
def test_date_prefixes_compare_the_right_ends(prefix: str, condition: str,
                                              bound: list[int]) -> None:
    built = build("Patient", f"birthdate={prefix}1970-01")
    assert re.search(r"i1\.h_param IN \(\?\) AND " + condition + r"\)\)\)$", built.sql), \
        built.sql
    assert built.params[1:] == bound


@pytest.mark.parametrize(("prefix", "condition", "bound"), [
    # 0.5 has an implicit range [0.45, 0.55); stored numbers are closed [low, high]
    ("eq", r"\(i1\.low >= \? AND i1\.low < \? AND i1\.high < \?\)", [0.45, 0.55, 0.55]),
    ("gt", r"i1\.high > \?", [0.5]),
    ("ge", r"i1\.high >= \?", [0.5]),
    ("lt", r"i1\.low < \?", [0.5]),
    ("le", r"i1\.low <= \?", [0.5]),
    ("sa", r"i1\.low > \?", [0.5]),
    ("eb", r"\(i1\.low < \? AND i1\.high < \?\)", [0.5, 0.5]),
])
def test_number_prefixes_compare_the_right_ends(prefix: str, condition: str,
                                                bound: list[float]) -> None:
    built = build("RiskAssessment", f"probability={prefix}0.5")
    assert re.search(r"i1\.h_param IN \(\?\) AND " + condition + r"\)\)\)$", built.sql), \
        built.sql
    assert built.params[1:] == pytest.approx(bound)


def test_quantity_units_narrow_by_system_and_code_or_by_code_or_unit() -> None:
    coded = build("Observation", "value-quantity=le5.4|http://unitsofmeasure.org|mg")
    assert coded.sql.endswith("i1.low <= ? AND i1.system = ? AND i1.code = ?)))")
    assert coded.params[1:] == [5.4, "http://unitsofmeasure.org", "mg"]
    unit_only = build("Observation", "value-quantity=5.4||mg")
    assert "(i1.code = ? OR i1.unit = ?)" in unit_only.sql
    assert unit_only.params[-2:] == ["mg", "mg"]


def test_composite_matches_each_component_on_one_row() -> None:
    built = build("Observation", "code-value-quantity=urn:x|k1$gt5")
    assert "FROM composite_index k WHERE k.h_param IN (?)" in built.sql
    assert "c2.c0_t2" in built.sql and "c2.c1_n2 > ?" in built.sql
    # the key lookup and the per-row check bind the same values
    assert built.params.count("k1") == 2 and built.params.count(5.0) == 2


def test_uri_modifiers() -> None:
    assert "substr(i1.uri, 1, 256) = ?" in build("Patient", "_profile=http://x.org/p").sql
    below = build("Patient", "_profile:below=http://x.org/")
    assert "substr(i1.uri, 1, 256) >= ?" in below.sql
    assert below.params[-2:] == ["http://x.org/", "http://x.org/" + TOP]
    above = build("Patient", "_profile:above=http://x.org/p/q")
    assert "substr(?, 1, length(i1.uri)) = i1.uri" in above.sql


def test_id_and_last_updated_read_the_resource_table() -> None:
    ids = build("Patient", "_id=a,b")
    assert ids.sql.endswith("r.res_id IN (?, ?)") and ids.params[-2:] == ["a", "b"]
    updated = build("Patient", "_lastUpdated=gt2020-01-01")
    assert "(r.last_updated + 1) > ?" in updated.sql
    assert updated.params[-1] == 1_577_923_200_000_000  # end of 2020-01-01, in microseconds
    assert build("Patient", "_lastUpdated:missing=true").sql.endswith("1 = 0")


def test_compartment_binds_the_owner_and_inlines_only_its_own_hashes() -> None:
    builder = SqlBuilder()
    clause = CompartmentClause("Patient", HOSTILE, ("subject", "patient"))
    sql, params = builder.render(
        f"SELECT r.res_id FROM resource r WHERE "
        f"{where_sql(builder, ('Observation',), [clause])}")
    built = Built(sql, params)
    assert_well_formed(built)
    assert params.count(HOSTILE) == 2
    hashes = re.search(r"h_param IN \(([^)]*)\)", sql)
    assert hashes is not None and re.fullmatch(r"-?\d+(, -?\d+)*", hashes.group(1))


# --- binding: client text never reaches the SQL text ---------------------------------------

HOSTILE_QUERIES = [
    ("Patient", "name"), ("Patient", "name:exact"), ("Patient", "name:contains"),
    ("Patient", "identifier"), ("Patient", "gender:text"), ("Patient", "_id"),
    ("Patient", "_profile"), ("Patient", "_profile:above"), ("Observation", "subject"),
    ("Observation", "subject:Patient.name"), ("Patient", "_has:Observation:patient:code"),
]


@pytest.mark.parametrize(("kind", "name"), HOSTILE_QUERIES, ids=[q[1] for q in HOSTILE_QUERIES])
@pytest.mark.parametrize(("value", "needle"), [
    (HOSTILE, "1=1"), ("a?b%s", "?b%s"), ("x\\' ; DROP TABLE r", "drop table"),
    ("\x000\x00", None),  # our own marker's shape: the parser drops the NULs
])
def test_hostile_values_appear_only_in_the_parameters(kind: str, name: str, value: str,
                                                      needle: str | None) -> None:
    parsed = parse_query(kind, [(name, f"urn:s|{value}" if name == "identifier" else value)])
    builder = SqlBuilder()
    sql, params = builder.render(
        f"SELECT r.res_id FROM resource r WHERE {where_sql(builder, (kind,), parsed.clauses)}")
    built = Built(sql, params)
    assert_well_formed(built)
    for piece in ("1=1", "DROP", "%s", "--"):
        assert piece not in sql
    if needle is not None:  # (normalised, and LIKE-escaped for :contains)
        assert any(isinstance(p, str) and needle in p.lower().replace("\\", "")
                   for p in params), params


# --- sorting, paging and key walks -------------------------------------------------------

def test_sort_keys_read_the_sort_value_and_end_with_a_total_order() -> None:
    parsed = parse_query("Patient", [("_sort", "-birthdate,name,_id,_lastUpdated")])
    builder = SqlBuilder()
    keys = order_keys(builder, parsed.options.sort, ("Patient",))
    expressions = [key.expression for key in keys]
    assert expressions[0].startswith("(SELECT MAX(o1.high) FROM date_index o1 WHERE "
                                     "o1.res_pk = r.pk AND o1.h_param IN (")
    assert expressions[1].startswith("(SELECT MIN(o2.norm) FROM string_index o2")
    assert expressions[2:] == ["r.res_id", "r.last_updated", "r.res_type", "r.res_id"]
    assert [key.descending for key in keys] == [True, False, False, False, False, False]
    # missing values sort last either way
    assert (keys[0].sentinel(), keys[1].sentinel()) == (-1e300, TOP)


def test_after_cursor_spells_out_the_row_comparison() -> None:
    parsed = parse_query("Patient", [("_sort", "-birthdate")])
    builder = SqlBuilder()
    keys = order_keys(builder, parsed.options.sort, ("Patient",))
    sql, params = builder.render(after_cursor(builder, keys, [5, "Patient", HOSTILE], False))
    assert sql == ("((q.k0 < ?) OR (q.k0 = ? AND q.k1 > ?) "
                   "OR (q.k0 = ? AND q.k1 = ? AND q.k2 > ?))")
    assert params == [5, 5, "Patient", 5, "Patient", HOSTILE]
    backwards, _ = builder.render(after_cursor(builder, keys, [5, "Patient", "a"], True))
    assert backwards.startswith("((q.k0 > ?) OR (q.k0 = ? AND q.k1 < ?)")


def test_key_walk_statements_bind_their_bounds() -> None:
    clauses = parse_query("Patient", [("gender", "female")]).clauses
    builder = SqlBuilder()
    bound = key_bound_sql(builder, ("Patient",), clauses, 40, False, 64)
    assert bound is not None
    sql, params = builder.render(bound)
    assert sql == ("SELECT k.res_pk FROM token_index k WHERE k.h_code IN (?) AND "
                   "k.res_pk > ? ORDER BY k.res_pk ASC LIMIT 1 OFFSET ?")
    assert params[1:] == [40, 63]
    builder = SqlBuilder()
    keys = key_range_sql(builder, ("Patient",), clauses, 10, 20)
    where, params = builder.render(where_sql(builder, ("Patient",), clauses, keys=keys))
    assert "r.pk IN (SELECT k.res_pk FROM token_index k WHERE k.h_code IN (?) AND " \
           "k.res_pk > ? AND k.res_pk <= ?)" in where
    assert 10 in params and 20 in params
    assert " AND EXISTS (SELECT 1 FROM token_index" in where  # every clause checked per row
    # a date clause has no key of its own to walk
    dated = parse_query("Patient", [("birthdate", "ge1970")]).clauses
    assert key_bound_sql(SqlBuilder(), ("Patient",), dated, None, False, 64) is None


# --- limits ------------------------------------------------------------------------------
# The builder enforces none: fhir/search/query.py check_limits refuses more values per
# parameter, deeper chains or more parameters (SearchLimits), and store/sql.py
# SqlSession.execute refuses a statement binding more than MAX_BOUND_VALUES.  What the
# builder owes is a statement that stays small at those limits.

def test_at_the_value_limit_each_value_is_one_or_arm() -> None:
    limit = SearchLimits().values
    values = ",".join(f"v{n}" for n in range(limit))
    built = build("Patient", f"name={values}")
    assert_well_formed(built)
    assert built.subqueries() == 1 and built.sql.count(") OR (") == limit - 1
    assert len(built.params) == 3 * limit  # per value: its param and a range


# --- execution on both databases ---------------------------------------------------------

RESOURCES = [
    {"resourceType": "Organization", "id": "acme", "name": "Acme Care"},
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith", "given": ["Eve"]}],
     "gender": "female", "birthDate": "1975-03-04",
     "identifier": [{"system": "urn:s", "value": "1"}],
     "managingOrganization": {"reference": "Organization/acme"},
     "meta": {"profile": ["http://x.org/p/one"]}},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Jones", "given": ["Bob"]}],
     "gender": "male", "birthDate": "1985", "identifier": [{"system": "urn:s", "value": "2"}]},
    {"resourceType": "Patient", "id": "p3", "name": [{"family": LONG}], "gender": "other",
     "birthDate": "1990-06"},
    {"resourceType": "Observation", "id": "o1", "status": "final",
     "code": {"coding": [{"system": "urn:x", "code": "k1"}]},
     "subject": {"reference": "Patient/p1"},
     "valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mg"}},
    {"resourceType": "Observation", "id": "o2", "status": "final",
     "code": {"coding": [{"system": "urn:x", "code": "k2"}]},
     "subject": {"reference": "Patient/p2"},
     "valueQuantity": {"value": 7, "system": "http://unitsofmeasure.org", "code": "mg"}},
]

SELECTIONS = [
    ("Patient", "name=eve", {"p1"}),
    ("Patient", "name:contains=ONE", {"p2"}),
    ("Patient", "name:exact=Bob", {"p2"}),
    ("Patient", "name:contains=o_e", set()),  # LIKE wildcards in a value match themselves
    ("Patient", "name:contains=on%", set()),
    ("Patient", "name=a?b%s", set()),  # placeholder characters in a value
    ("Patient", "identifier=urn:s|1,urn:s|2", {"p1", "p2"}),
    ("Patient", "gender:not=male", {"p1", "p3"}),
    ("Patient", "gender:missing=true", set()),
    ("Patient", "birthdate=ge1970-01&birthdate=lt1980", {"p1"}),
    ("Patient", "_profile:below=http://x.org/p", {"p1"}),
    ("Patient", "_profile:above=http://x.org/p/one/two", {"p1"}),
    ("Patient", "_id=p2,nobody", {"p2"}),
    ("Patient", f"name={LONG[:280]}", {"p3"}),
    ("Patient", f"name={LONG[:270]}x", set()),  # the prefix matches, the whole does not
    ("Patient", f"name:exact={LONG}", {"p3"}),
    ("Patient", f"name:exact={LONG[:299]}", set()),
    ("Patient", "_lastUpdated=gt2020-01-01", {"p2"}),
    ("Patient", "_has:Observation:patient:code=urn:x|k1", {"p1"}),
    ("Observation", "subject=p1", {"o1"}),
    ("Observation", "subject:Patient=p1", {"o1"}),
    ("Observation", "subject=Patient/p1,Patient/p2,Patient/nobody", {"o1", "o2"}),
    ("Observation", "patient=Patient/p2,Patient/p3", {"o2"}),
    ("Observation", "code=urn:x|k1&patient=Patient/p1,Patient/p2", {"o1"}),
    ("Patient", "_has:Observation:patient:subject=Patient/p2,Patient/p3", {"p2"}),
    ("Observation", "patient=Patient/p2", {"o2"}),  # shares subject's rows, by target type
    ("Observation", "subject:Patient.name=bob", {"o2"}),
    ("Observation", "subject:Patient.organization.name=acme", {"o1"}),
    ("Observation", "subject:Patient._id=p1", {"o1"}),
    ("Observation", "subject:Patient.gender:not=male", {"o1"}),
    ("Observation", "subject:Patient.identifier:missing=false", {"o1", "o2"}),
    ("Observation", "subject:Patient.identifier:missing=true", set()),
    ("Patient", "_has:Observation:patient:_lastUpdated=gt2010", {"p1", "p2"}),
    ("Patient", "_has:Observation:patient:status:not=final", set()),
    ("Patient", "_has:Observation:patient:code:not=urn:x|k1", {"p2"}),
    ("Patient", "_has:Observation:patient:_id=o1", {"p1"}),
    ("Observation", "subject:Patient._has:Observation:patient:code=urn:x|k2", {"o2"}),
    ("Patient", "_has:Observation:patient:subject:Patient.name=eve", {"p1"}),
    ("Observation,Patient", "_id=o1,p2", {"o1", "p2"}),
    ("Patient", "identifier=|1", set()),  # p1's identifier has a system
    ("Patient", "identifier:not=urn:s|1", {"p2", "p3"}),
    ("Patient", "birthdate=1990&birthdate:missing=false", {"p3"}),
    ("Patient", "_lastUpdated=lt2020&_lastUpdated=ge2017-07-14", {"p1", "p3"}),
    ("Observation", "value-quantity=le5.4|http://unitsofmeasure.org|mg", {"o1"}),
    ("Observation", "value-quantity=gt6||mg", {"o2"}),
    ("Observation", "status:in=http://hl7.org/fhir/ValueSet/observation-status",
     {"o1", "o2"}),
    ("Observation", "status:not-in=http://hl7.org/fhir/ValueSet/observation-status", set()),
    ("Observation", "code-value-quantity=urn:x|k2$gt5", {"o2"}),
    ("Observation", "code-value-quantity=urn:x|k1$gt6", set()),
    ("Observation", "code-value-quantity=urn:x|k1$gt5,urn:x|k2$gt6", {"o1", "o2"}),
    ("Patient,Organization", "name=acme", {"acme"}),
    ("Patient", f"name={HOSTILE}", set()),
    ("Patient", f"_id={HOSTILE}", set()),
    ("Patient", "name=" + ",".join(f"v{n}" for n in range(SearchLimits().values - 1)) + ",bob",
     {"p2"}),
    ("Observation", "subject:Patient.organization.partof.name=acme", set()),
]


@pytest.fixture
def stored(repository: Repository) -> Repository:
    """The resources above, indexed as a write indexes them; p2 updated in 2021."""
    with repository.transaction() as session:
        for seq, resource in enumerate(RESOURCES, start=1):
            at = 1_609_459_200_000_000 if resource["id"] == "p2" else 1_500_000_000_000_000
            session.put(StoredVersion(resource["resourceType"], resource["id"], 1, at, False,
                                      orjson.dumps(resource), "PUT", seq),
                        index_resource(resource))
    return repository


def test_generated_statements_select_the_right_resources_on_both_databases(
        stored: Repository) -> None:
    with stored.reader() as session:
        assert isinstance(session, SqlSession)
        dialect = "%s" if isinstance(session, PostgresSession) else "?"
        assert session.placeholder == dialect
        for kind, query, expected in SELECTIONS:
            built = build(kind, query)
            text = session._sql(built.sql)  # the dialect the session sends
            assert text.count(dialect) == len(built.params), query
            assert dialect == "?" or "?" not in text, query
            found = {row[0] for row in session.execute(built.sql, built.params).fetchall()}
            assert found == expected, query
            assert_well_formed(built)
        # the hostile values selected nothing and changed nothing
        assert session.execute("SELECT COUNT(*) FROM resource").fetchone()[0] == len(RESOURCES)


def test_a_compartment_statement_selects_the_owner_and_what_points_at_it(
        stored: Repository) -> None:
    builder = SqlBuilder()
    clause = CompartmentClause("Patient", "p1", ("subject", "patient"))
    sql, params = builder.render("SELECT r.res_id FROM resource r WHERE " + where_sql(
        builder, ("Patient", "Observation"), [clause]))
    with stored.reader() as session:
        assert {row[0] for row in session.execute(sql, params).fetchall()} == {"p1", "o1"}


def test_a_sorted_statement_orders_rows_on_both_databases(stored: Repository) -> None:
    parsed = parse_query("Patient", [("_sort", "-birthdate")])
    builder = SqlBuilder()
    where = where_sql(builder, ("Patient",), parsed.clauses)
    keys = order_keys(builder, parsed.options.sort, ("Patient",))
    order = ", ".join(f"COALESCE({key.expression}, {builder.value(key.sentinel())})"
                      f"{' DESC' if key.descending else ''}" for key in keys)
    sql, params = builder.render(f"SELECT r.res_id FROM resource r WHERE {where} "
                                 f"ORDER BY {order}")
    with stored.reader() as session:
        assert [row[0] for row in session.execute(sql, params).fetchall()] == ["p3", "p2", "p1"]
