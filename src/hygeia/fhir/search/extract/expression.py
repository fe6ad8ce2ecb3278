"""Parse the few FHIRPath shapes that SearchParameter expressions are made of.

Every R4 SearchParameter expression is a union (``|``) of simple paths: child
names, ``as``/``ofType`` type filters, ``where(resolve() is X)``,
``where(field='literal')``, ``[n]``/``first()`` and ``extension('url')``.  This
module turns such text into :class:`Path` objects (pure syntax, no types);
:mod:`.paths` then resolves them against the R4 type definitions.  Anything
else raises :class:`Unsupported` so the caller can fall back to a full FHIRPath
engine instead of guessing.

>>> parse_expression("Observation.subject.where(resolve() is Patient)")[0].steps
(Child(name='subject'), WhereResolve(type_name='Patient'))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hygeia.fhir.spec import is_resource_type

__all__ = [
    "Child",
    "Index",
    "OfType",
    "Path",
    "PresenceTest",
    "Step",
    "Unsupported",
    "WhereEquals",
    "WhereResolve",
    "parse_expression",
    "root_name",
    "split_union",
]

RESOURCE_ROOTS = frozenset({"Resource", "DomainResource"})


class Unsupported(ValueError):
    """The expression uses FHIRPath beyond the shapes compiled here."""


@dataclass(frozen=True, slots=True)
class Child:
    """Navigate to a child element by its FHIRPath name (``value`` for ``value[x]``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Index:
    """``[n]`` (and ``first()`` as ``[0]``): keep the n-th node of the collection."""

    position: int


@dataclass(frozen=True, slots=True)
class OfType:
    """``as T``, ``.as(T)``, ``.ofType(T)``: keep the nodes of type T (or a subtype)."""

    type_name: str


@dataclass(frozen=True, slots=True)
class WhereResolve:
    """``where(resolve() is T)``: keep references whose target is a T."""

    type_name: str


@dataclass(frozen=True, slots=True)
class WhereEquals:
    """``where(field='literal')``: keep nodes whose primitive child equals the literal."""

    field: str
    value: str


Step = Child | Index | OfType | WhereResolve | WhereEquals


@dataclass(frozen=True, slots=True)
class Path:
    """One union member: where it starts and the steps from there.

    ``root`` is the type named at the start (``"Observation"``, ``"Resource"``)
    or None for a path relative to the context node (composite components);
    ``from_resource`` marks ``%resource`` (the resource, whatever the context).
    """

    root: str | None
    steps: tuple[Step, ...]
    from_resource: bool = False


@dataclass(frozen=True, slots=True)
class PresenceTest:
    """``X.exists() and X != false`` (Patient ``deceased``): one boolean per resource."""

    path: Path


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+)|(?P<id>%?[A-Za-z_][A-Za-z0-9_]*)"
    r"|`(?P<quoted>[^`]+)`|(?P<op>!=|[.()\[\]|=]))"
)
_PRESENCE = re.compile(r"(?P<path>.+?)\.exists\(\)\s+and\s+(?P<again>.+?)\s*!=\s*false")


def parse_expression(text: str) -> list[Path | PresenceTest]:
    """Parse a SearchParameter expression into its union members (raises Unsupported)."""
    presence = _PRESENCE.fullmatch(text.strip())
    if presence is not None:
        if presence["path"].strip() != presence["again"].strip():
            raise Unsupported(f"not a presence test: {text}")
        return [PresenceTest(path) for path in _Parser(presence["path"]).union()]
    return list(_Parser(text).union())


def split_union(text: str) -> list[str]:
    """The top-level union members of ``text`` (brackets and string literals respected).

    Lets one member fall back to a FHIRPath engine while the others compile.
    """
    members: list[str] = []
    depth, start, quoted = 0, 0, False
    for position, char in enumerate(text):
        if quoted:
            quoted = char != "'" or text[position - 1] == "\\"
        elif char == "'":
            quoted = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            members.append(text[start:position].strip())
            start = position + 1
    members.append(text[start:].strip())
    return [member for member in members if member]


def root_name(member: str) -> str:
    """The first name in a union member (``Observation`` in ``(Observation.value as X)``)."""
    match = _ROOT.match(member)
    return match[1] if match else ""


_ROOT = re.compile(r"[\s(]*(%?[A-Za-z_][A-Za-z0-9_]*)")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position, end = 0, len(text.rstrip())
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise Unsupported(f"unexpected text at {position}: {text[position : position + 20]!r}")
        kind = match.lastgroup or "op"
        value = match[kind]
        tokens.append(("id", value) if kind == "quoted" else (kind, value))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the token list; each method returns a tuple of Paths."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0

    def union(self) -> tuple[Path, ...]:
        paths = self.typed_term()
        while self._accept("op", "|"):
            paths += self.typed_term()
        if self.position != len(self.tokens):
            raise Unsupported(f"unexpected {self._peek()[1]!r} in {self.text}")
        return paths

    def typed_term(self) -> tuple[Path, ...]:
        paths = self.term()
        if self._accept("id", "as"):
            paths = _extend(paths, OfType(_type_name(self._expect("id"))))
        return paths

    def term(self) -> tuple[Path, ...]:
        paths = self.primary()
        while True:
            if self._accept("op", "."):
                paths = _extend(paths, *self.invocation())
            elif self._accept("op", "["):
                paths = _extend(paths, Index(int(self._expect("num"))))
                self._expect("op", "]")
            else:
                return paths

    def primary(self) -> tuple[Path, ...]:
        if self._accept("op", "("):
            inner = self.typed_term()
            while self._accept("op", "|"):
                inner += self.typed_term()
            self._expect("op", ")")
            return inner
        name = self._expect("id")
        if name == "%resource":
            return (Path(None, (), from_resource=True),)
        if name in RESOURCE_ROOTS or is_resource_type(name):
            return (Path(name, ()),)
        if name.startswith("%"):
            raise Unsupported(f"variable {name}")
        return (Path(None, self._after_name(name)),)

    def invocation(self) -> tuple[Step, ...]:
        name = self._expect("id")
        return self._after_name(name)

    def _after_name(self, name: str) -> tuple[Step, ...]:
        """A bare name is a child; a name followed by ``(`` is a function call."""
        if not self._accept("op", "("):
            return (Child(name),)
        steps = self._function(name)
        self._expect("op", ")")
        return steps

    def _function(self, name: str) -> tuple[Step, ...]:
        if name in ("as", "ofType"):
            return (OfType(_type_name(self._expect("id"))),)
        if name == "first":
            return (Index(0),)
        if name == "extension":
            url = _literal(self._expect("str"))
            return (Child("extension"), WhereEquals("url", url))
        if name == "where":
            return (self._condition(),)
        raise Unsupported(f"function {name}()")

    def _condition(self) -> Step:
        name = self._expect("id")
        if name == "resolve":
            self._expect("op", "(")
            self._expect("op", ")")
            self._expect("id", "is")
            return WhereResolve(_type_name(self._expect("id")))
        self._expect("op", "=")
        return WhereEquals(name, _literal(self._expect("str")))

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("end", "")

    def _accept(self, kind: str, value: str | None = None) -> bool:
        token_kind, token_value = self._peek()
        if token_kind == kind and (value is None or token_value == value):
            self.position += 1
            return True
        return False

    def _expect(self, kind: str, value: str | None = None) -> str:
        token_kind, token_value = self._peek()
        if token_kind != kind or (value is not None and token_value != value):
            raise Unsupported(f"expected {value or kind}, got {token_value!r} in {self.text}")
        self.position += 1
        return token_value


def _extend(paths: tuple[Path, ...], *steps: Step) -> tuple[Path, ...]:
    return tuple(Path(p.root, p.steps + steps, p.from_resource) for p in paths)


def _type_name(name: str) -> str:
    """FHIRPath type specifiers: strip namespaces; System types map to FHIR primitives."""
    name = name.removeprefix("FHIR.").removeprefix("System.")
    return _SYSTEM_TYPES.get(name, name)


_SYSTEM_TYPES = {
    "String": "string",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}


def _literal(token: str) -> str:
    """A FHIRPath string literal without quotes, with \\-escapes resolved."""
    return re.sub(r"\\(.)", r"\1", token[1:-1])
