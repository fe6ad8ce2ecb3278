"""The FHIRPath subset of SQL on FHIR v2, on top of fhirpathpy.

fhirpathpy covers navigation, ``where``, ``ofType`` (with the R4 model for choice
types), ``first``, ``join``, ``extension``, ``exists``, ``empty``, boolean logic and
arithmetic; this module adds what the specification requires beyond standard
FHIRPath: ``getResourceKey()``, ``getReferenceKey([type])`` and the boundary
functions ``lowBoundary()`` / ``highBoundary()``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from hygeia.analytics.views.fast import Slow, reference_keys

Evaluator = Callable[[Any, dict[str, Any]], list[Any]]


class PathError(ValueError):
    """A FHIRPath expression that does not parse."""


def _resource_key(inputs: list[Any]) -> list[Any]:
    return [f"{r['resourceType']}/{r['id']}" for r in inputs if isinstance(r, dict) and "id" in r]


def _reference_key(inputs: list[Any], type_name: Any = None) -> list[Any]:
    return reference_keys(_type_name(type_name))(inputs)


def _type_name(spec: Any) -> str | None:
    """The name of a type-specifier argument (fhirpathpy hands it in as an object or text)."""
    if spec is None:
        return None
    name = getattr(spec, "name", None)
    if isinstance(name, str):
        return name.split(".")[-1]
    if isinstance(spec, list):
        return _type_name(spec[0]) if spec else None
    return str(spec).split(".")[-1]


def _decimal_places(value: Any) -> int:
    text = str(value)
    return len(text.split(".")[1]) if "." in text else 0


def _boundary_decimal(value: Any, high: bool) -> Any:
    places = _decimal_places(value)
    half = Decimal(5) / (Decimal(10) ** (places + 1))
    result = Decimal(str(value)) + (half if high else -half)
    return float(result)


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(r"^(\d{4}(?:-\d{2}(?:-\d{2})?)?)T?(.*)$")
_TIME = re.compile(r"^(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


def _boundary_date(text: str, high: bool) -> str | None:
    match = _DATE.match(text)
    if not match:
        return None
    year = int(match.group(1))
    month = int(match.group(2)) if match.group(2) else (12 if high else 1)
    if match.group(3):
        day = int(match.group(3))
    else:
        day = calendar.monthrange(year, month)[1] if high else 1
    return f"{year:04d}-{month:02d}-{day:02d}"


def _boundary_time(text: str, high: bool) -> str | None:
    match = _TIME.match(text)
    if not match:
        return None
    hour = match.group(1)
    minute = match.group(2) or ("59" if high else "00")
    second = match.group(3) or ("59" if high else "00")
    fraction = (match.group(4) or "").ljust(3, "9" if high else "0")[:3]
    return f"{hour}:{minute}:{second}.{fraction}"


def _boundary_datetime(text: str, high: bool) -> str | None:
    if "T" not in text:
        date = _boundary_date(text, high)
        if date is None:
            return None
        clock, zone = ("23:59:59.999", "-12:00") if high else ("00:00:00.000", "+14:00")
        return f"{date}T{clock}{zone}"
    date_part, rest = text.split("T", 1)
    zone_match = re.search(r"(Z|[+-]\d{2}:\d{2})$", rest)
    zone = zone_match.group(1) if zone_match else ("-12:00" if high else "+14:00")
    time_text = rest[: zone_match.start()] if zone_match else rest
    date = _boundary_date(date_part, high)
    time = _boundary_time(time_text, high)
    if date is None or time is None:
        return None
    return f"{date}T{time}{zone}"


def _boundary(inputs: list[Any], high: bool) -> list[Any]:
    out: list[Any] = []
    for item in inputs:
        value = plain(item)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float, Decimal)):
            out.append(_boundary_decimal(value, high))
            continue
        text = str(value) if not isinstance(value, str) else value
        text = text.lstrip("@")
        if _TIME.match(text) and ":" in text and "-" not in text[:4]:
            result = _boundary_time(text, high)
        elif "T" in text:
            result = _boundary_datetime(text, high)
        else:
            result = (
                _boundary_datetime(text, high)
                if _is_datetime_item(item)
                else _boundary_date(text, high)
            )
        if result is not None:
            out.append(result)
    return out


def _is_datetime_item(item: Any) -> bool:
    return str(getattr(item, "path", "")).endswith(("dateTime", "instant"))


def _low(inputs: list[Any]) -> list[Any]:
    return _boundary(inputs, high=False)


def _high(inputs: list[Any]) -> list[Any]:
    return _boundary(inputs, high=True)


_USER_FUNCTIONS: dict[str, Any] = {
    "getResourceKey": {"fn": _resource_key, "arity": {0: []}},
    "getReferenceKey": {"fn": _reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
    "lowBoundary": {"fn": _low, "arity": {0: [], 1: ["Integer"]}},
    "highBoundary": {"fn": _high, "arity": {0: [], 1: ["Integer"]}},
}


def _join(inputs: list[Any], separator: Any = None) -> list[Any]:
    """``join`` of an empty collection is the empty string, as the suite expects."""
    sep = separator[0] if isinstance(separator, list) and separator else (separator or "")
    return [str(sep).join(str(plain(item)) for item in inputs)]


def _table() -> dict[str, Any]:
    """Our functions, called with fhirpathpy's nodes (so boundaries see the FHIR type)."""
    functions = dict(_USER_FUNCTIONS)
    functions["join"] = {"fn": _join, "arity": {0: [], 1: ["String"]}}

    def unwrap(fn: Callable[..., list[Any]], keep_nodes: bool) -> Callable[..., list[Any]]:
        def call(ctx: Any, inputs: list[Any], *args: Any) -> list[Any]:
            values = inputs if keep_nodes else [plain(i) for i in inputs]
            return fn(values, *args)

        return call

    return {
        name: {**entry, "fn": unwrap(entry["fn"], name in ("lowBoundary", "highBoundary", "join"))}
        for name, entry in functions.items()
    }


def _check_syntax(expression: str) -> None:
    """Raise on any syntax error: fhirpathpy's own parse recovers from some silently
    (``name.(`` parses), which would turn a typo into a column of nulls."""
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class Raising(ErrorListener):
        def syntaxError(
            self, recognizer: Any, symbol: Any, line: int, column: int, message: str, error: Any
        ) -> None:
            raise PathError(f"syntax error at character {column + 1}: {message}")

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(Raising())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(Raising())
    parser.entireExpression()


class CompiledPath:
    """A parsed expression: called as an :data:`Evaluator`. A simple path
    (:mod:`hygeia.analytics.views.fast`) walks the JSON directly and hands a resource
    it cannot walk to the engine; ``fast`` says whether it is one, ``typed`` is the
    engine alone (its results keep their FHIR types, for a forEach whose expressions
    inside need them)."""

    __slots__ = ("_walk", "fast", "typed")

    def __init__(self, typed: Evaluator, walk: Callable[[Any], list[Any]] | None) -> None:
        self.typed = typed
        self.fast = walk is not None
        self._walk = walk

    def __call__(self, context: Any, variables: dict[str, Any]) -> list[Any]:
        if self._walk is not None:
            try:
                return self._walk(context)
            except Slow:
                pass
        return self.typed(context, variables)

    @property
    def walk_function(self) -> Callable[[Any], list[Any]]:
        """The JSON walk alone (only for a ``fast`` path), for callers that handle
        :class:`~hygeia.analytics.views.fast.Slow` themselves: one call less per value."""
        assert self._walk is not None
        return self._walk

    def values(self, context: Any, variables: dict[str, Any]) -> list[Any]:
        """The result as plain JSON values (:func:`plain`)."""
        if self._walk is not None:
            try:
                return self._walk(context)
            except Slow:
                pass
        return [plain(item) for item in self.typed(context, variables)]


@cache
def compile_path(expression: str) -> CompiledPath:
    """Parse ``expression`` once; raise :class:`PathError` when it is not FHIRPath.

    Evaluation uses fhirpathpy's engine with our function table handed over
    unwrapped, and returns fhirpathpy's nodes so a forEach item keeps its FHIR type
    for the expressions evaluated inside it; simple paths walk the JSON instead
    (:class:`CompiledPath`)."""
    from fhirpathpy.engine import do_eval
    from fhirpathpy.engine.invocations.constants import constants
    from fhirpathpy.engine.util import arraify
    from fhirpathpy.models import models
    from fhirpathpy.parser import parse

    from hygeia.analytics.views.fast import fast_path

    try:
        _check_syntax(expression)
        parsed = parse(expression)
    except Exception as exc:
        raise PathError(f"'{expression}' is not a valid FHIRPath expression ({exc})") from exc
    table = _table()
    model = models["r4"]

    def evaluate(resource: Any, variables: dict[str, Any]) -> list[Any]:
        constants.reset()
        root = arraify(resource)
        ctx = {
            "dataRoot": root,
            "vars": {"context": resource, "ucum": "http://unitsofmeasure.org", **variables},
            "model": model,
            "userInvocationTable": table,
            "$this": root,
        }
        result = do_eval(ctx, root, parsed["children"][0])
        return list(result) if isinstance(result, list) else [result]

    return CompiledPath(evaluate, fast_path(expression))


def plain(item: Any) -> Any:
    """A JSON value for one evaluation result (fhirpathpy nodes and typed values unwrapped)."""
    from fhirpathpy.engine.nodes import FP_Type, ResourceNode

    if isinstance(item, ResourceNode):
        item = item.data
    if isinstance(item, FP_Type):
        return str(item)
    if isinstance(item, Decimal):
        return float(item)
    return item
