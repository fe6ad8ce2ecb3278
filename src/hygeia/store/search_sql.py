"""Translate a parsed search query into SQL that runs on SQLite and PostgreSQL alike.

Every clause becomes an ``EXISTS`` over one index side table correlated with
the resource row (alias ``r`` at the top level), so clauses combine freely:
AND across clauses, OR across the values of one clause, ``NOT EXISTS`` for
``:not`` and ``:missing=true``.  Chains join a reference row to its target
resource and evaluate the inner clause against it; ``_has`` does the reverse.

Value semantics follow search.html: a search date or number has an implicit
range from its precision; stored dates are ranges too (``[low, high)``), and so
are stored numbers and quantities (closed ``[low, high]``, a point for a plain
value; see :mod:`hygeia.fhir.search.extract.ranges`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.extract.shared import stored_codes, stored_sources
from hygeia.fhir.search.parameters import SearchRegistry, default_registry
from hygeia.fhir.search.query import (
    ChainClause,
    Clause,
    CompartmentClause,
    HasClause,
    IdClause,
    ParameterClause,
)
from hygeia.fhir.search.values import (
    CompositeValue,
    DateValue,
    InValue,
    OfTypeValue,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    SearchValue,
    StringValue,
    TokenValue,
    UriValue,
)
from hygeia.store.hashing import code_hash, param_hash
from hygeia.store.schema import INDEX_TABLES, PREFIX_CHARS, PREFIXED_COLUMNS, prefix

TOP = "\U0010ffff"  # sorts after every other character (byte-wise)

TABLE_BY_TYPE = {"string": "string_index", "token": "token_index",
                 "reference": "reference_index", "date": "date_index",
                 "number": "number_index", "quantity": "quantity_index", "uri": "uri_index",
                 "composite": "composite_index"}

# logical column -> physical column of a composite component, by component type
COMPOSITE_COLUMNS = {
    "token": {"system": "t1", "code": "t2"},
    "string": {"norm": "t1", "exact": "t2"},
    "reference": {"target_type": "t1", "target_id": "t2", "url": "t3"},
    "date": {"low": "n1", "high": "n2"},
    "number": {"low": "n1", "high": "n2"},
    "quantity": {"low": "n1", "high": "n2", "system": "t1", "code": "t2", "unit": "t3"},
    "uri": {"uri": "t1"},
}


_MARK = re.compile("\x00(\\d+)\x00")
_PREFIXED = frozenset(PREFIXED_COLUMNS.values())  # bare names, unique across the tables


@dataclass
class SqlBuilder:
    """Accumulates SQL fragments and their parameters.

    ``value()`` returns a unique marker rather than ``?``, and :meth:`render`
    puts the parameters in the order the markers appear in the final text, so
    fragments can be built in any order and reused (a marker used twice binds
    its value twice).  ``registry`` decides which parameters share stored rows
    (:mod:`hygeia.fhir.search.extract.shared`).
    """

    registry: SearchRegistry | None = None
    params: list[Any] = field(default_factory=list)
    _aliases: int = 0

    def alias(self, prefix: str) -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def value(self, value: Any) -> str:
        self.params.append(value)
        return f"\x00{len(self.params) - 1}\x00"

    def render(self, sql: str) -> tuple[str, list[Any]]:
        """Replace markers with ``?`` and return the parameters in textual order."""
        ordered = [self.params[int(index)] for index in _MARK.findall(sql)]
        return _MARK.sub("?", sql), ordered

    # --- clauses ------------------------------------------------------------------------
    # Every clause is "{owner}.pk IN (subquery)": the subquery is uncorrelated, so the
    # database drives it from the lookup index instead of probing every resource row.

    def param_match(self, alias: str, types: tuple[str, ...], code: str) -> str:
        """SQL true for an index row of ``alias`` that holds a value of ``code`` on ``types``.

        ``h_param IN (...)`` over the stored parameters (:mod:`..extract.shared`),
        plus, for a filtered reference parameter (Observation ``patient``: the
        ``subject`` rows pointing at a Patient), its stored rows' target type.
        """
        plain: list[int] = []
        narrowed: list[str] = []
        for kind in types:
            for stored, target in stored_sources(self.registry, kind, code):
                if target is None:
                    plain.append(param_hash(kind, stored))
                else:
                    narrowed.append(f"({alias}.h_param = {self.value(param_hash(kind, stored))} "
                                    f"AND {alias}.target_type = {self.value(target)})")
        if plain:
            narrowed.insert(0, f"{alias}.h_param IN ({', '.join(map(self.value, plain))})")
        if len(narrowed) == 1:
            return narrowed[0]
        return "(" + " OR ".join(narrowed) + ")" if narrowed else "1 = 0"

    def param_hashes(self, types: tuple[str, ...], code: str) -> list[int]:
        """h_param of every stored parameter whose rows make up ``code`` on ``types``
        (token codes: the filtered sharing of :meth:`param_match` is for references)."""
        return [param_hash(kind, stored) for kind in types
                for stored in stored_codes(self.registry, kind, code)]

    def clause(self, clause: Clause, owner: str, types: tuple[str, ...],
               correlated: bool = False) -> str:
        """SQL for one clause; ``correlated`` probes the owner's own index rows instead.

        Only one clause of a query drives (``pk IN`` its uncorrelated subquery,
        served by a lookup index); the others are checked per candidate row through
        the (res_pk, h_param) owner index, so a broad clause such as a date range
        never has to be materialised in full.
        """
        if isinstance(clause, IdClause):
            marks = ", ".join(self.value(i) for i in clause.ids)
            return f"{owner}.res_id IN ({marks})"
        if isinstance(clause, ChainClause):
            return self._chain(clause, owner, types)
        if isinstance(clause, HasClause):
            return self._has(clause, owner, types)
        if isinstance(clause, CompartmentClause):
            return self._compartment(clause, owner, types)
        return self._parameter(clause, owner, types, correlated)

    def key_source(self, clause: Clause, types: tuple[str, ...]) -> str | None:
        """``FROM ... WHERE ...`` of the keys (``k.res_pk``) a lookup index alone gives.

        A superset of the clause's matches, read from the lookup index only (no table
        rows), so the exact clause must be checked per candidate as well; only the
        candidates a page really visits then pay for that check.  A token clause keys
        on ``h_code``; a composite whose first component is a coded token on its whole
        combination of values (``c0_t2``, then the second component's range).
        None when the clause has no such key.
        """
        if not isinstance(clause, ParameterClause) or clause.missing is not None \
                or clause.modifier is not None or not clause.values:
            return None
        code = clause.parameter.code
        if clause.parameter.type == "token":
            codes = _token_codes(clause.values)
            if codes is None:
                return None
            keys = ", ".join(self.value(code_hash(param, value))
                             for param in self.param_hashes(types, code) for value in codes)
            return f"FROM token_index k WHERE k.h_code IN ({keys})"
        components = clause.parameter.components
        if clause.parameter.type != "composite" or not components \
                or components[0].type != "token":
            return None
        codes = _token_codes(tuple(value.parts[0] for value in clause.values
                                   if isinstance(value, CompositeValue)))
        if codes is None or len(codes) != len(clause.values):
            return None
        # exact: the whole combination is one row, served by (h_param, c0_t2, c1_n2...)
        return f"FROM composite_index k WHERE {self.composite_match(clause, 'k', types)}"

    def _compartment(self, clause: CompartmentClause, owner: str, types: tuple[str, ...]) -> str:
        ref, itself = self.alias("cp"), self.alias("o")
        registry = self.registry or default_registry()
        hashes = _hash_literals(registry, registry.generation, types, clause.params,
                                clause.owner_type)
        # one IN over a UNION (not "is the owner OR in the compartment"), so the
        # planner can still drive the query from it
        return (f"{owner}.pk IN (SELECT {ref}.res_pk FROM reference_index {ref} "
                f"WHERE {ref}.target_id = {self.value(clause.owner_id)} AND {ref}.target_type = "
                f"{self.value(clause.owner_type)} AND {ref}.h_param IN ({hashes}) "
                f"UNION SELECT {itself}.pk FROM resource {itself} WHERE {itself}.res_type = "
                f"{self.value(clause.owner_type)} AND {itself}.res_id = "
                f"{self.value(clause.owner_id)})")

    def _chain(self, clause: ChainClause, owner: str, types: tuple[str, ...]) -> str:
        ref = self.alias("ch")
        alternatives = []
        for kind, inner in clause.alternatives:
            target = self.alias("t")
            column = f"({target}.res_type || '')" if _selective(inner) else f"{target}.res_type"
            alternatives.append(
                f"({ref}.target_id IN (SELECT {target}.res_id FROM resource {target} WHERE "
                f"{self.clause(inner, target, (kind,))} AND {column} = {self.value(kind)} "
                f"AND {target}.deleted = {self.value(False)}) AND "
                f"{ref}.target_type = {self.value(kind)})")
        either = alternatives[0] if len(alternatives) == 1 else \
            f"({' OR '.join(alternatives)})"
        return (f"{owner}.pk IN (SELECT {ref}.res_pk FROM reference_index {ref} WHERE "
                f"{either} AND {self.param_match(ref, types, clause.parameter.code)})")

    def _has(self, clause: HasClause, owner: str, types: tuple[str, ...]) -> str:
        """Driven from the inner clause: matching sources, then their reference rows.

        Uncorrelated (the target types are literals), so it is evaluated once, not
        once per candidate resource.
        """
        ref, source = self.alias("hs"), self.alias("s")
        kind = (clause.source_type,)
        param = self.param_match(ref, kind, clause.parameter.code)
        targets = ", ".join(self.value(t) for t in types)
        sources = self.matching_keys(clause.inner, kind)
        if sources is None:
            column = f"({source}.res_type || '')" if _selective(clause.inner) else \
                f"{source}.res_type"
            sources = (f"SELECT {source}.pk FROM resource {source} WHERE "
                       f"{column} = {self.value(clause.source_type)} AND "
                       f"{source}.deleted = {self.value(False)} AND "
                       f"{self.clause(clause.inner, source, kind)}")
        return (f"({owner}.res_type, {owner}.res_id) IN (SELECT {ref}.target_type, "
                f"{ref}.target_id FROM reference_index {ref} "
                f"WHERE {param} AND {ref}.target_type IN ({targets}) "
                f"AND {ref}.res_pk IN ({sources}))")

    def _parameter(self, clause: ParameterClause, owner: str, types: tuple[str, ...],
                   correlated: bool) -> str:
        if clause.parameter.code == "_lastUpdated":
            return self._last_updated(clause, owner)
        subquery, inside = self._parameter_rows(clause, owner, types, correlated)
        return self._membership(owner, subquery, inside, correlated)

    def matching_keys(self, clause: Clause, types: tuple[str, ...]) -> str | None:
        """``SELECT res_pk ...`` of every resource a positive parameter clause matches.

        Index rows exist only for current, undeleted versions and their h_param
        names the type, so these keys need no check against the resource table
        (``_has`` then skips one row lookup per source).  None for other clauses.
        """
        if not isinstance(clause, ParameterClause) or clause.parameter.code == "_lastUpdated":
            return None
        subquery, inside = self._parameter_rows(clause, "", types, correlated=False)
        return subquery if inside else None

    def _parameter_rows(self, clause: ParameterClause, owner: str, types: tuple[str, ...],
                        correlated: bool) -> tuple[str, bool]:
        """(the subquery of the clause's index rows, whether a match is inside it)."""
        parameter = clause.parameter
        kind, modifier = parameter.type, clause.modifier
        table = TABLE_BY_TYPE[kind]
        code = parameter.code
        if modifier in ("of-type", "identifier"):
            table, code = "token_index", f"{parameter.code}:{modifier}"
        inner = self.alias("i")
        if correlated:
            head = (f"SELECT 1 FROM {table} {inner} WHERE {inner}.res_pk = {owner}.pk AND "
                    f"{self.param_match(inner, types, code)} AND ")
        else:
            head = f"SELECT {inner}.res_pk FROM {table} {inner} WHERE "
        if clause.missing is not None:
            present = (f"({inner}.system IS NOT NULL OR {inner}.code IS NOT NULL)"
                       if table == "token_index" else "1 = 1")  # text-only rows hold no code
            return (head + present if correlated else head +
                    f"{self.param_match(inner, types, code)} AND {present}",
                    not clause.missing)
        if kind == "composite":
            return self._composite_rows(clause, owner, types, correlated), True
        columns = _columns(inner, table, modifier)
        listed = self._reference_list(clause.values, columns)
        if listed is not None:
            body = listed if correlated else f"{self.param_match(inner, types, code)} AND {listed}"
            return f"{head}({body})", modifier not in ("not", "not-in")
        alternatives = " OR ".join(
            "(" + (self.condition(value, modifier, columns) if correlated else
                   self._keyed(value, modifier, columns, types, code, inner)) + ")"
            for value in clause.values)
        return f"{head}({alternatives})", modifier not in ("not", "not-in")

    @staticmethod
    def _membership(owner: str, subquery: str, inside: bool, correlated: bool) -> str:
        if correlated:
            return f"{'' if inside else 'NOT '}EXISTS ({subquery})"
        return f"{owner}.pk {'IN' if inside else 'NOT IN'} ({subquery})"

    def _keyed(self, value: SearchValue, modifier: str | None, columns: dict[str, str],
               types: tuple[str, ...], code: str, inner: str) -> str:
        """The value condition, led by the lookup key its table is indexed on."""
        if isinstance(value, TokenValue) and value.code is not None and "h_code" in columns:
            keys = ", ".join(self.value(code_hash(param, value.code))
                             for param in self.param_hashes(types, code))
            return f"{inner}.h_code IN ({keys}) AND {self.condition(value, modifier, columns)}"
        return f"{self.param_match(inner, types, code)} AND " \
               f"{self.condition(value, modifier, columns)}"

    def _reference_list(self, values: tuple[SearchValue, ...], columns: dict[str, str]
                        ) -> str | None:
        """``target_type = ? AND target_id IN (?, ...)`` when every value is a local
        reference to one type (``patient=Patient/1,Patient/2,...``), else None.

        The same rows as one OR arm per value, but PostgreSQL plans an OR of 200 arms
        (a bitmap scan each) for longer than it runs it: 8 ms of planning for 7 ms of
        work in the NEWS2 engine's searches of 200 patients, 1 ms with the list."""
        if len(values) < 2 or columns.get("target_id", "").rpartition(".")[2] in _PREFIXED:
            return None
        if not all(type(value) is ReferenceValue and value.url is None and
                   value.type is not None and value.id is not None for value in values):
            return None
        kinds = {value.type for value in values if isinstance(value, ReferenceValue)}
        if len(kinds) != 1:
            return None
        ids = ", ".join(self.value(value.id) for value in values
                        if isinstance(value, ReferenceValue))
        return f"{columns['target_type']} = {self.value(kinds.pop())} AND " \
               f"{columns['target_id']} IN ({ids})"

    def _composite_rows(self, clause: ParameterClause, owner: str, types: tuple[str, ...],
                        correlated: bool) -> str:
        row = self.alias("c")
        owned = f"{row}.res_pk = {owner}.pk AND " if correlated else ""
        return (f"SELECT {row}.res_pk FROM composite_index {row} WHERE {owned}"
                f"{self.composite_match(clause, row, types)}")

    def composite_match(self, clause: ParameterClause, row: str, types: tuple[str, ...]
                        ) -> str:
        """True for a composite_index row (one combination of component values) that
        matches one of the clause's values: every component on its own columns."""
        alternatives = []
        for value in clause.values:
            assert isinstance(value, CompositeValue)
            conditions = []
            for index, (part, component) in enumerate(
                    zip(value.parts, clause.parameter.components, strict=True)):
                columns = COMPOSITE_COLUMNS.get(component.type)
                if columns is None:
                    raise BadRequest(f"Composite component type {component.type} is not "
                                     "searchable.", code="not-supported",
                                     expression=clause.parameter.code)
                physical = {k: f"{row}.c{index}_{v}" for k, v in columns.items()}
                conditions.append(f"({self.condition(part, None, physical)})")
            alternatives.append("(" + " AND ".join(conditions) + ")")
        return (f"{self.param_match(row, types, clause.parameter.code)} AND "
                f"({' OR '.join(alternatives)})")

    def _last_updated(self, clause: ParameterClause, owner: str) -> str:
        if clause.missing is not None:
            return "1 = 0" if clause.missing else "1 = 1"
        columns = {"low": f"{owner}.last_updated", "high": f"({owner}.last_updated + 1)"}
        return "(" + " OR ".join("(" + self.condition(v, None, columns) + ")"
                                 for v in clause.values) + ")"

    # --- values -------------------------------------------------------------------------

    def condition(self, value: SearchValue, modifier: str | None,
                  columns: dict[str, str]) -> str:
        """SQL that is true when the index row in ``columns`` matches ``value``."""
        handler = _CONDITIONS.get(type(value))
        if handler is None:
            raise BadRequest(f"Cannot search with {type(value).__name__}.", code="not-supported")
        return handler(self, value, modifier, columns)

    def equal(self, column: str, text: str) -> str:
        """``column = text``, on its indexed prefix where the column has one.

        Long text columns are indexed by prefix (store/schema.py ``PREFIXED_COLUMNS``):
        only a condition on that same expression can use the index.  A text shorter
        than the prefix equals the column exactly when it equals the column's prefix;
        a longer one is compared whole as well.
        """
        if column.rpartition(".")[2] not in _PREFIXED:
            return f"{column} = {self.value(text)}"
        if len(text) < PREFIX_CHARS:
            return f"{self._present(column)}{prefix(column)} = {self.value(text)}"
        return f"{prefix(column)} = {self.value(text[:PREFIX_CHARS])} AND " \
               f"{column} = {self.value(text)}"

    def starts_with(self, column: str, text: str) -> str:
        """``column`` begins with ``text``: a byte-wise range, on its indexed prefix.

        A text no longer than the prefix begins the column exactly when it begins
        the column's prefix; a longer one fixes the whole prefix and is compared
        whole as well.
        """
        prefixed = column.rpartition(".")[2] in _PREFIXED
        if prefixed and len(text) > PREFIX_CHARS:
            return (f"{prefix(column)} = {self.value(text[:PREFIX_CHARS])} AND "
                    f"{column} >= {self.value(text)} AND {column} < {self.value(text + TOP)}")
        if not prefixed:
            return f"{column} >= {self.value(text)} AND {column} < {self.value(text + TOP)}"
        return (f"{self._present(column)}{prefix(column)} >= {self.value(text)} AND "
                f"{prefix(column)} < {self.value(text + TOP)}")

    @staticmethod
    def _present(column: str) -> str:
        """``column IS NOT NULL AND`` for a column whose index holds only present values
        (token texts): a condition on its prefix alone does not tell SQLite that."""
        return f"{column} IS NOT NULL AND " if column.rpartition(".")[2] == "text" else ""

    def _string(self, value: Any, modifier: str | None, columns: dict[str, str]) -> str:
        assert isinstance(value, StringValue)
        if modifier == "exact":
            return self.equal(columns["exact"], value.text)
        column = columns["norm"]
        if modifier == "contains":
            return f"{column} LIKE {self.value('%' + _like(value.norm) + '%')} ESCAPE '\\'"
        return self.starts_with(column, value.norm)

    def _token(self, value: Any, modifier: str | None, columns: dict[str, str]) -> str:
        assert isinstance(value, TokenValue)
        parts = []
        if value.code is not None:
            parts.append(self.equal(columns["code"], value.code))
        if value.system == "":
            parts.append(f"{columns['system']} IS NULL")
        elif value.system is not None:
            parts.append(f"{columns['system']} = {self.value(value.system)}")
        return " AND ".join(parts) or "1 = 1"

    def _in(self, value: Any, modifier: str | None, columns: dict[str, str]) -> str:
        assert isinstance(value, InValue)
        pairs = ", ".join(f"({self.value(system)}, {self.value(code)})"
                          for system, code in sorted(value.codes))
        bare = ", ".join(self.value(code) for code in sorted({c for _, c in value.codes}))
        # a ``code`` element carries no system: its binding implies it, so match the code
        return (f"(({columns['system']}, {columns['code']}) IN (VALUES {pairs}) OR "
                f"({columns['system']} IS NULL AND {columns['code']} IN ({bare})))")

    def _of_type(self, value: Any, modifier: str | None, columns: dict[str, str]) -> str:
        assert isinstance(value, OfTypeValue)
        # indexed as system = the type's coding system, code = "<type code>|<value>"
        return (f"{columns['system']} = {self.value(value.system)} AND "
                f"{self.equal(columns['code'], f'{value.code}|{value.value}')}")

    def _range(self, value: Any, modifier: str | None, columns: dict[str, str]) -> str:
        assert isinstance(value, RangeValue | QuantityValue)
        if isinstance(value, DateValue):
            condition = self._stored_range(value, columns["low"], columns["high"])
        else:
            condition = self._number_range(value, columns["low"], columns["high"])
        if isinstance(value, QuantityValue):
            condition += self._units(value, columns)
        return condition

    def _stored_range(self, value: RangeValue | QuantityValue, low: str, high: str) -> str:
        """Stored [low, high) against search [sl, sh), per search.html date prefixes."""
        sl, sh = int(value.low), int(value.high)
        v = self.value
        eq = f"({low} >= {v(sl)} AND {high} <= {v(sh)})"
        prefix = value.prefix
        if prefix == "eq":
            return eq
        if prefix == "ne":
            return f"NOT {eq}"
        if prefix == "gt":
            return f"{high} > {v(sh)}"
        if prefix == "lt":
            return f"{low} < {v(sl)}"
        if prefix == "ge":
            return f"({high} > {v(sh)} OR {eq})"
        if prefix == "le":
            return f"({low} < {v(sl)} OR {eq})"
        if prefix == "sa":
            return f"{low} >= {v(sh)}"
        if prefix == "eb":
            return f"{high} <= {v(sl)}"
        slack = max((sh - sl) // 10, 86_400_000_000)  # ap: 10% of the range, at least a day
        return f"({low} < {v(sh + slack)} AND {high} > {v(sl - slack)})"

    def _number_range(self, value: RangeValue | QuantityValue, low: str, high: str) -> str:
        """Stored closed [low, high] numbers against a prefixed search value.

        The same rules as the matcher's ``_number_range`` (a point is low = high).
        Where a condition on ``high`` implies one on ``low`` (low <= high always),
        the bound on ``low`` is added too, so the (h_param, low) lookup index can
        serve it as a range scan.
        """
        v = self.value
        prefix, number = value.prefix, value.value
        contained = (f"({low} >= {v(value.low)} AND {low} < {v(value.high)} AND "
                     f"{high} < {v(value.high)})")
        if prefix == "eq":
            return contained
        if prefix == "ne":
            return f"NOT {contained}"
        simple = {"gt": (high, ">"), "ge": (high, ">="), "lt": (low, "<"), "le": (low, "<="),
                  "sa": (low, ">")}.get(prefix)
        if simple is not None:
            return f"{simple[0]} {simple[1]} {v(number)}"
        if prefix == "eb":
            return f"({low} < {v(number)} AND {high} < {v(number)})"
        slack = abs(number) * 0.1  # ap: overlaps the value +- 10%
        return f"({low} <= {v(number + slack)} AND {high} >= {v(number - slack)})"

    def _units(self, value: QuantityValue, columns: dict[str, str]) -> str:
        parts = ""
        if value.system is not None:
            parts += f" AND {columns['system']} = {self.value(value.system)}"
        if value.code is not None:
            if value.system is not None:
                parts += f" AND {self.equal(columns['code'], value.code)}"
            else:
                parts += (f" AND ({columns['code']} = {self.value(value.code)} OR "
                          f"{columns['unit']} = {self.value(value.code)})")
        return parts

    def _reference(self, value: Any, modifier: str | None, columns: dict[str, str]) -> str:
        assert isinstance(value, ReferenceValue)
        parts = []
        if value.type is not None:
            parts.append(f"{columns['target_type']} = {self.value(value.type)}")
        if value.id is not None:
            parts.append(self.equal(columns["target_id"], value.id))
        local = " AND ".join(parts)
        if value.url is None:
            return local or "1 = 0"
        by_url = f"{columns['url']} = {self.value(value.url)}"
        return f"({by_url} OR ({local}))" if local else by_url

    def _uri(self, value: Any, modifier: str | None, columns: dict[str, str]) -> str:
        assert isinstance(value, UriValue)
        column = columns.get("uri", columns.get("url", ""))
        if modifier == "below":
            return self.starts_with(column, value.uri)
        if modifier == "above":
            return f"substr({self.value(value.uri)}, 1, length({column})) = {column}"
        return self.equal(column, value.uri)


@lru_cache(maxsize=256)
def _hash_literals(registry: SearchRegistry, generation: int, types: tuple[str, ...],
                   codes: tuple[str, ...], owner_type: str) -> str:
    """The h_param of every (type, code) pair's stored parameters as SQL integer literals.

    (``generation`` is part of the cache key: custom parameters can change which
    parameters share rows.)

    ``$everything`` names 67 types and 17 compartment parameters: binding those 1,139
    hashes as parameters took half its time.  They are our own integers, never
    client text, so literals are safe, and the statement text repeats, so the
    prepared statement is reused.
    """
    return ", ".join(str(hash_) for hash_ in
                     sorted({param_hash(kind, stored) for kind in types for code in codes
                             for stored, target in stored_sources(registry, kind, code)
                             if target in (None, owner_type)})) or "0"


def _token_codes(values: tuple[SearchValue, ...]) -> list[str] | None:
    """The codes of plain token values (each with a code), or None if any lacks one."""
    codes = [value.code for value in values
             if type(value) is TokenValue and value.code is not None]
    return codes if len(codes) == len(values) else None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _columns(alias: str, table: str, modifier: str | None = None) -> dict[str, str]:
    """Logical value names -> columns of one index table (``:text`` reads text as ``norm``)."""
    columns = {name: f"{alias}.{name}" for name in INDEX_TABLES[table]}
    if modifier == "text" and table == "token_index":
        columns["norm"] = columns["text"]
    return columns


_Condition = Callable[[SqlBuilder, Any, "str | None", dict[str, str]], str]
_CONDITIONS: dict[type, _Condition] = {
    StringValue: SqlBuilder._string,
    TokenValue: SqlBuilder._token,
    OfTypeValue: SqlBuilder._of_type,
    InValue: SqlBuilder._in,
    RangeValue: SqlBuilder._range,
    DateValue: SqlBuilder._range,
    QuantityValue: SqlBuilder._range,
    ReferenceValue: SqlBuilder._reference,
    UriValue: SqlBuilder._uri,
}


# --- whole queries: filter, order, keyset paging ------------------------------------------

_SORT_COLUMN = {"string": ("string_index", "norm", False), "token": ("token_index", "code", False),
                "reference": ("reference_index", "target_id", False),
                "uri": ("uri_index", "uri", False), "date": ("date_index", None, True),
                "number": ("number_index", None, True),
                "quantity": ("quantity_index", None, True)}
_NUMBER_TOP = 1e300


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ORDER BY key; ``numeric`` decides the sentinel that sorts missing values last."""

    expression: str
    descending: bool
    numeric: bool

    def sentinel(self) -> Any:
        if self.numeric:
            return -_NUMBER_TOP if self.descending else _NUMBER_TOP
        return "" if self.descending else TOP


def driving_clause(clauses: list[Clause]) -> Clause | None:
    """The clause whose lookup index supplies the candidate rows (None: scan by type)."""
    return min((c for c in clauses if _selective(c)), key=_selectivity_rank, default=None)


def where_sql(builder: SqlBuilder, types: tuple[str, ...], clauses: list[Clause],
              keys: str | None = None) -> str:
    """The WHERE of a search over ``resource r``.

    ``keys`` (an SQL list of pks, when the caller walks the driving clause's keys
    itself) replaces the driving lookup; every clause is then checked per row.
    """
    driver = driving_clause(clauses)
    conditions = [] if isinstance(driver, ParameterClause) else [
        _type_test(builder, types, driver), f"r.deleted = {builder.value(False)}"]
    source = None
    if keys is not None:
        conditions.append(f"r.pk IN ({keys})")
    elif driver is not None:
        source = builder.key_source(driver, types)
        if source is not None:
            conditions.append(f"r.pk IN (SELECT k.res_pk {source})")
    exact = keys is not None or source is not None
    conditions.extend(builder.clause(clause, "r", types,
                                     correlated=clause is not driver or exact)
                      for clause in clauses)
    return " AND ".join(conditions)


def _type_test(builder: SqlBuilder, types: tuple[str, ...], driver: Clause | None) -> str:
    """``r`` is of one of ``types``: needed (with ``r.deleted`` false) unless a
    parameter clause drives the query.

    Index rows exist for current, undeleted versions only, and their ``h_param``
    names the type, so the keys a parameter clause drives with need neither test.
    Left in, the type test was estimated at 0.5% of the rows (an expression has no
    statistics) and ``deleted`` made PostgreSQL read every resource row to hash them:
    on a patient with 60,000 Observations it chose nested loops over every candidate
    (a 500 ms search; ADR core-date-search).  With another selective clause
    driving (pk IN ...) the test must not tempt the planner into scanning every resource
    of the type, so it is written as an expression no index serves.
    """
    marks = ", ".join(builder.value(kind) for kind in types)
    column = "(r.res_type || '')" if driver is not None else "r.res_type"
    return f"{column} IN ({marks})"


def key_bound_sql(builder: SqlBuilder, types: tuple[str, ...], clauses: list[Clause],
                  after: int | None, backwards: bool, batch: int) -> str | None:
    """The driving clause's ``batch``-th candidate key after ``after`` in walk order (no
    row when fewer remain), or None when it has no key source (see
    :meth:`SqlBuilder.key_source`)."""
    driver = driving_clause(clauses)
    source = None if driver is None else builder.key_source(driver, types)
    if source is None:
        return None
    bound = "" if after is None else \
        f" AND k.res_pk {'<' if backwards else '>'} {builder.value(after)}"
    return (f"SELECT k.res_pk {source}{bound} ORDER BY k.res_pk "
            f"{'DESC' if backwards else 'ASC'} LIMIT 1 OFFSET {builder.value(batch - 1)}")


def key_range_sql(builder: SqlBuilder, types: tuple[str, ...], clauses: list[Clause],
                  low: int | None, high: int | None) -> str:
    """The driving clause's candidate keys in ``(low, high]`` (None: unbounded)."""
    driver = driving_clause(clauses)
    source = None if driver is None else builder.key_source(driver, types)
    assert source is not None
    if low is not None:
        source += f" AND k.res_pk > {builder.value(low)}"
    if high is not None:
        source += f" AND k.res_pk <= {builder.value(high)}"
    return f"SELECT k.res_pk {source}"


_RANK = {"reference": 0, "token": 0, "composite": 1, "string": 1, "uri": 1, "quantity": 2,
         "number": 2, "date": 3}


def _selectivity_rank(clause: Clause) -> int:
    """A guess at how few rows a clause selects: the lowest drives the query."""
    if isinstance(clause, ParameterClause):
        return _RANK.get(clause.parameter.type, 3)
    return 1


def _selective(clause: Clause) -> bool:
    if isinstance(clause, ParameterClause):
        return clause.missing is not True and clause.modifier not in ("not", "not-in") \
            and clause.parameter.code != "_lastUpdated"
    return not isinstance(clause, IdClause)


def order_keys(builder: SqlBuilder, sort: list[Any], types: tuple[str, ...]
               ) -> list[OrderKey]:
    """ORDER BY keys for ``_sort``, then (type, id) so the order is total and stable."""
    keys: list[OrderKey] = []
    for key in sort:
        if key.parameter is None:
            keys.append(OrderKey("r.res_id", key.descending, False))
        elif key.parameter.code == "_lastUpdated":
            keys.append(OrderKey("r.last_updated", key.descending, True))
        else:
            keys.append(_sort_subquery(builder, key, types))
    keys.append(OrderKey("r.res_type", False, False))
    keys.append(OrderKey("r.res_id", False, False))
    return keys


def _sort_subquery(builder: SqlBuilder, key: Any, types: tuple[str, ...]) -> OrderKey:
    table, column, numeric = _SORT_COLUMN[key.parameter.type]
    if column is None:  # ranges: lowest start ascending, highest end descending
        column = "high" if key.descending else "low"
    aggregate = "MAX" if key.descending else "MIN"
    alias = builder.alias("o")
    return OrderKey(f"(SELECT {aggregate}({alias}.{column}) FROM {table} {alias} WHERE "
                    f"{alias}.res_pk = r.pk AND "
                    f"{builder.param_match(alias, types, key.parameter.code)})",
                    key.descending, numeric)


def after_cursor(builder: SqlBuilder, keys: list[OrderKey], boundary: list[Any],
                 backwards: bool) -> str:
    """Rows strictly after ``boundary`` in key order (before it when ``backwards``).

    Keys may mix ascending and descending, so the row comparison is spelled out:
    k0 > b0 OR (k0 = b0 AND k1 > b1) OR ...
    """
    alternatives = []
    for position, key in enumerate(keys):
        equal = [f"q.k{i} = {builder.value(boundary[i])}" for i in range(position)]
        forward = key.descending == backwards
        operator = ">" if forward else "<"
        alternatives.append(" AND ".join(
            [*equal, f"q.k{position} {operator} {builder.value(boundary[position])}"]))
    return "(" + " OR ".join(f"({a})" for a in alternatives) + ")"
