"""ViewDefinition validation and row generation (SQL on FHIR v2).

A view is compiled once (:func:`compile_view`): its structure is checked and every
FHIRPath expression parsed, so an invalid view fails before any resource is read.
Rows come out of :meth:`CompiledView.rows` one resource at a time, so a run over
millions of resources holds one resource's rows in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hygeia.analytics.views.fast import FastPath, Slow
from hygeia.analytics.views.fhirpath import (
    CompiledPath,
    Evaluator,
    PathError,
    compile_path,
    plain,
)

Row = dict[str, Any]


class ViewError(ValueError):
    """An invalid ViewDefinition or a view that cannot run on some resource.

    ``location`` names the offending element (``select[0].column[1].path``)."""

    def __init__(self, message: str, location: str = "ViewDefinition") -> None:
        super().__init__(message)
        self.location = location


@dataclass(frozen=True)
class Column:
    name: str
    path: Evaluator
    expression: str
    type: str | None
    collection: bool
    location: str


@dataclass(frozen=True)
class Select:
    """One select node: how it iterates, its columns, nested selects and unionAll branches."""

    columns: tuple[Column, ...]
    selects: tuple[Select, ...]
    union: tuple[Select, ...]
    for_each: Evaluator | None = None
    or_null: bool = False
    repeat: tuple[Evaluator, ...] = ()
    names: tuple[str, ...] = field(default=())
    fast: bool = False  # every expression in it walks JSON (views/fast.py)
    # when fast: (name, walk, collection) per column, and the forEach's walk
    walks: tuple[tuple[str, FastPath, bool], ...] = ()
    for_each_walk: FastPath | None = None
    null_row: Row = field(default_factory=dict)  # forEachOrNull over nothing, when fast


_CONSTANT_TYPES = (
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Integer64",
    "Oid",
    "String",
    "PositiveInt",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
)
_CONSTANT_KEYS = frozenset("value" + kind for kind in _CONSTANT_TYPES)


def _path(expression: Any, location: str) -> Evaluator:
    if not isinstance(expression, str) or not expression.strip():
        raise ViewError(f"{location} must be a FHIRPath expression (a non-empty string)", location)
    try:
        return compile_path(expression)
    except PathError as exc:
        raise ViewError(str(exc), location) from exc


def _column(raw: Any, location: str) -> Column:
    if not isinstance(raw, dict):
        raise ViewError(f"{location} must be an object", location)
    name = raw.get("name")
    if not isinstance(name, str) or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise ViewError(
            f"{location}.name must be a database-friendly name (letters, digits, _)", location
        )
    collection = raw.get("collection", False)
    if not isinstance(collection, bool):
        raise ViewError(f"{location}.collection must be true or false", location)
    column_type = raw.get("type")
    if column_type is not None and not isinstance(column_type, str):
        raise ViewError(f"{location}.type must be a string", location)
    return Column(
        name,
        _path(raw.get("path"), f"{location}.path"),
        raw["path"],
        column_type,
        collection,
        location,
    )


def _select(raw: Any, location: str) -> Select:
    if not isinstance(raw, dict):
        raise ViewError(f"{location} must be an object", location)
    iterators = [key for key in ("forEach", "forEachOrNull", "repeat") if key in raw]
    if len(iterators) > 1:
        raise ViewError(f"{location} may have only one of forEach, forEachOrNull, repeat", location)
    columns = tuple(
        _column(c, f"{location}.column[{i}]") for i, c in enumerate(_list(raw, "column", location))
    )
    selects = tuple(
        _select(s, f"{location}.select[{i}]") for i, s in enumerate(_list(raw, "select", location))
    )
    union = tuple(
        _select(u, f"{location}.unionAll[{i}]")
        for i, u in enumerate(_list(raw, "unionAll", location))
    )
    _check_union(union, location)
    for_each = None
    repeat: tuple[Evaluator, ...] = ()
    if "forEach" in raw or "forEachOrNull" in raw:
        key = "forEach" if "forEach" in raw else "forEachOrNull"
        for_each = _path(raw[key], f"{location}.{key}")
    if "repeat" in raw:
        paths = raw["repeat"]
        if not isinstance(paths, list) or not paths:
            raise ViewError(f"{location}.repeat must be a non-empty list of expressions", location)
        repeat = tuple(_path(p, f"{location}.repeat[{i}]") for i, p in enumerate(paths))
    node = Select(columns, selects, union, for_each, "forEachOrNull" in raw, repeat)
    names = _names(node)
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ViewError(f"{location} repeats column names {sorted(duplicates)}", location)
    inside = all(_fast(c.path) for c in columns) and all(s.fast for s in (*selects, *union))
    if for_each is not None and not inside:
        # an expression inside needs the engine's typed items, not bare JSON
        for_each = getattr(for_each, "typed", for_each)
    fast = inside and not repeat and (for_each is None or _fast(for_each))
    walks = tuple((c.name, _walk_of(c.path), c.collection) for c in columns) if fast else ()
    return Select(columns, selects, union, for_each, "forEachOrNull" in raw, repeat,
                  tuple(names), fast, walks,
                  _walk_of(for_each) if fast and for_each is not None else None,
                  _walked_null_row(names, walks))


def _walked_null_row(names: list[str], walks: tuple[tuple[str, FastPath, bool], ...]) -> Row:
    """The row of a forEachOrNull over nothing, the same for every resource: its columns
    evaluated on an empty collection (``exists()`` is false there, not null)."""
    row: Row = dict.fromkeys(names)
    for name, walk, collection in walks:
        values = walk([])
        if len(values) == 1 and not collection:
            row[name] = values[0]
    return row


def _walk_of(path: Evaluator) -> FastPath:
    assert isinstance(path, CompiledPath) and path.fast
    return path.walk_function


def _fast(path: Evaluator) -> bool:
    return bool(getattr(path, "fast", False))


def _names(node: Select) -> list[str]:
    names = [c.name for c in node.columns]
    for child in node.selects:
        names.extend(child.names)
    if node.union:
        names.extend(node.union[0].names)
    return names


def _check_union(union: tuple[Select, ...], location: str) -> None:
    if union and any(branch.names != union[0].names for branch in union):
        raise ViewError(
            f"{location}.unionAll branches must have the same columns in the same order", location
        )


def _list(raw: dict[str, Any], key: str, location: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ViewError(f"{location}.{key} must be a list", f"{location}.{key}")
    return value


def _constants(view: dict[str, Any]) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for i, raw in enumerate(_list(view, "constant", "ViewDefinition")):
        location = f"ViewDefinition.constant[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ViewError(f"{location} needs a name", location)
        values = [key for key in raw if key.startswith("value")]
        if len(values) != 1 or values[0] not in _CONSTANT_KEYS:
            raise ViewError(f"{location} needs exactly one value[x] of a primitive type", location)
        constants[raw["name"]] = raw[values[0]]
    return constants


@dataclass(frozen=True)
class CompiledView:
    """A validated view: the resource type it reads, its columns and how to flatten."""

    resource: str
    name: str | None
    root: Select
    wheres: tuple[tuple[Evaluator, str], ...]
    constants: dict[str, Any]

    @property
    def columns(self) -> list[str]:
        return list(self.root.names)

    @property
    def column_types(self) -> dict[str, str | None]:
        return dict(_types(self.root))

    def rows(self, resources: Iterable[dict[str, Any]]) -> Iterator[Row]:
        """Rows for every resource of the view's type that passes every ``where``."""
        for resource in resources:
            if resource.get("resourceType") != self.resource:
                continue
            yield from self.resource_rows(resource)

    def resource_rows(self, resource: dict[str, Any]) -> list[Row]:
        """The rows of one resource (empty when a ``where`` excludes it)."""
        variables = dict(self.constants)
        for where, location in self.wheres:
            result = self._eval(where, resource, variables, location)
            if len(result) > 1 or (result and not isinstance(result[0], bool)):
                raise ViewError(f"{location} must evaluate to a boolean", location)
            if result != [True]:
                return []
        if self.root.fast:
            try:
                return self._walked(self.root, resource)
            except Exception:  # Slow, or an error the general path words with its location
                pass  # this resource needs the engine somewhere: the general path below
        return [
            {name: row.get(name) for name in self.root.names}
            for row in self._node(self.root, resource, variables, 0)
        ]

    def _walked(self, node: Select, context: Any) -> list[Row]:
        """:meth:`_node` for a select whose every expression walks JSON, calling the
        walks directly: most views are such, and the general path's per-column
        indirection (engine fallback, variables, error wrapping) is most of their cost.
        Its rows hold the select's names in order, as the general path's do; a
        resource the walk cannot take raises :class:`Slow` and goes the general way."""
        if node.for_each_walk is None:
            return self._walked_here(node, context)
        items = node.for_each_walk(context)
        if not items:
            return [dict(node.null_row)] if node.or_null else []
        return [row for item in items for row in self._walked_here(node, item)]

    def _walked_here(self, node: Select, context: Any) -> list[Row]:
        base: Row = {}
        for name, walk, collection in node.walks:
            values = walk(context)
            if collection:
                base[name] = values
            elif len(values) > 1:
                raise Slow  # the general path raises the error, with its wording
            else:
                base[name] = values[0] if values else None
        rows = [base]
        for child in node.selects:
            child_rows = self._walked(child, context)
            rows = [{**left, **right} for left in rows for right in child_rows]
        if node.union:
            union_rows = [row for branch in node.union for row in self._walked(branch, context)]
            rows = [{**left, **right} for left in rows for right in union_rows]
        return rows


    def _eval(
        self, path: Evaluator, context: Any, variables: dict[str, Any], location: str
    ) -> list[Any]:
        try:
            if type(path) is CompiledPath:
                return path.values(context, variables)
            return [plain(item) for item in path(context, variables)]
        except ViewError:
            raise
        except Exception as exc:
            raise ViewError(f"{location} could not be evaluated: {exc}", location) from exc

    def _raw(
        self, path: Evaluator, context: Any, variables: dict[str, Any], location: str
    ) -> list[Any]:
        try:
            return path(context, variables)
        except Exception as exc:
            raise ViewError(f"{location} could not be evaluated: {exc}", location) from exc

    def _node(self, node: Select, context: Any, variables: dict[str, Any], index: int) -> list[Row]:
        if node.for_each is not None:
            items = self._raw(node.for_each, context, variables, "forEach")
            rows = [r for i, item in enumerate(items) for r in self._here(node, item, variables, i)]
            if not items and node.or_null:
                return [self._null_row(node, variables)]
            return rows
        if node.repeat:
            items = self._depth_first(node.repeat, context, variables)
            return [r for i, item in enumerate(items) for r in self._here(node, item, variables, i)]
        return self._here(node, context, variables, index)

    def _depth_first(
        self, paths: tuple[Evaluator, ...], context: Any, variables: dict[str, Any], depth: int = 0
    ) -> list[Any]:
        if depth > 64:
            raise ViewError("repeat is nested more than 64 levels deep", "repeat")
        found: list[Any] = []
        for path in paths:
            for child in self._raw(path, context, variables, "repeat"):
                found.append(child)
                found.extend(self._depth_first(paths, child, variables, depth + 1))
        return found

    def _null_row(self, node: Select, variables: dict[str, Any]) -> Row:
        """forEachOrNull over nothing: one row of nulls, where %rowIndex is still 0."""
        row: Row = dict.fromkeys(node.names)
        scope = {**variables, "rowIndex": 0}
        for column in node.columns:
            values = self._eval(column.path, [], scope, column.location)
            row[column.name] = (
                values[0] if len(values) == 1 and not column.collection else row[column.name]
            )
        return row

    def _here(self, node: Select, context: Any, variables: dict[str, Any], index: int) -> list[Row]:
        # a JSON walk reads no variables: only the engine needs %rowIndex
        scope = variables if node.fast else {**variables, "rowIndex": index}
        base: Row = {}
        for column in node.columns:
            values = self._eval(column.path, context, scope, column.location)
            if column.collection:
                base[column.name] = values
            elif len(values) > 1:
                raise ViewError(
                    f"{column.location} ('{column.expression}') returned {len(values)} values; "
                    "set collection: true to keep them as an array",
                    column.location,
                )
            else:
                base[column.name] = values[0] if values else None
        rows = [base]
        for child in node.selects:
            child_rows = self._node(child, context, scope, index)
            rows = [{**left, **right} for left in rows for right in child_rows]
        if node.union:
            union_rows = [
                r for branch in node.union for r in self._node(branch, context, scope, index)
            ]
            rows = [{**left, **right} for left in rows for right in union_rows]
        return rows


def _types(node: Select) -> Iterator[tuple[str, str | None]]:
    for column in node.columns:
        yield column.name, (None if column.collection else column.type)
    for child in node.selects:
        yield from _types(child)
    if node.union:
        yield from _types(node.union[0])


def compile_view(view: Any) -> CompiledView:
    """Validate ``view`` (a ViewDefinition as JSON) and compile its expressions."""
    if not isinstance(view, dict):
        raise ViewError("a ViewDefinition must be a JSON object")
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ViewError(
            "ViewDefinition.resource is required: the FHIR resource type the view reads",
            "ViewDefinition.resource",
        )
    selects = _list(view, "select", "ViewDefinition")
    if not selects:
        raise ViewError("ViewDefinition.select needs at least one select", "ViewDefinition.select")
    root = _select({"select": selects}, "ViewDefinition")
    root = Select((), root.selects, (), names=root.names, fast=root.fast)
    wheres = []
    for i, raw in enumerate(_list(view, "where", "ViewDefinition")):
        location = f"ViewDefinition.where[{i}].path"
        if not isinstance(raw, dict):
            raise ViewError(f"ViewDefinition.where[{i}] must be an object", location)
        wheres.append((_path(raw.get("path"), location), location))
    name = view.get("name")
    return CompiledView(
        resource, name if isinstance(name, str) else None, root, tuple(wheres), _constants(view)
    )
