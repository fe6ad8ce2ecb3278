"""The SearchParameter registry: the official R4 definitions plus custom ones.

Parameters whose base is ``Resource`` or ``DomainResource`` (``_id``,
``_lastUpdated``, ``_tag``, ``_profile``, ``_security``, ``_source``...) apply
to every resource type.  Custom SearchParameter resources POSTed to the server
are added with :meth:`SearchRegistry.add` and then behave like official ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hygeia.fhir.spec import domain_resource_types, resource_types, search_parameters

RESOURCE_BASES = ("Resource", "DomainResource")
# parameters without a FHIRPath expression the index could serve (full text, named queries)
NOT_INDEXED = frozenset({"_text", "_content", "_query", "_list", "_has", "_type"})


@dataclass(frozen=True, slots=True)
class Component:
    """One component of a composite parameter: its own parameter's code and type."""

    code: str
    definition: str
    expression: str
    type: str


@dataclass(frozen=True, slots=True)
class SearchParameter:
    """A SearchParameter, reduced to what indexing and querying need."""

    url: str
    code: str
    base: tuple[str, ...]
    type: str
    expression: str | None = None
    target: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    multiple_or: bool = True
    multiple_and: bool = True

    @property
    def indexed(self) -> bool:
        return bool(self.expression) and self.code not in NOT_INDEXED \
            and self.type != "special"


@dataclass(eq=False)  # hashed by identity, for the per-type cache
class SearchRegistry:
    """Search parameters by (resource type, code); built once, extended by custom ones."""

    _by_type: dict[str, dict[str, SearchParameter]] = field(default_factory=dict)
    _by_url: dict[str, SearchParameter] = field(default_factory=dict)
    _common: dict[str, SearchParameter] = field(default_factory=dict)
    generation: int = 0  # bumped on every change, so caches built from the registry can tell

    def add(self, parameter: SearchParameter) -> None:
        """Register a parameter for each of its base types (replacing one with the same code)."""
        self._by_url[parameter.url] = parameter
        for base in parameter.base:
            if base in RESOURCE_BASES:
                self._common[parameter.code] = parameter
            else:
                self._by_type.setdefault(base, {})[parameter.code] = parameter
        self.generation += 1
        self.for_type.cache_clear()

    def remove(self, url: str) -> None:
        """Forget a custom parameter (official ones are re-added by a fresh registry)."""
        parameter = self._by_url.pop(url, None)
        if parameter is None:
            return
        for base in parameter.base:
            table = self._common if base in RESOURCE_BASES else self._by_type.get(base, {})
            if table.get(parameter.code) is parameter:
                del table[parameter.code]
        self.generation += 1
        self.for_type.cache_clear()

    def copy(self) -> SearchRegistry:
        """A registry with the same parameters, to extend without touching this one."""
        clone = SearchRegistry()
        for parameter in self._by_url.values():
            clone.add(parameter)
        return clone

    def get(self, resource_type: str, code: str) -> SearchParameter | None:
        return self.for_type(resource_type).get(code)

    def by_url(self, url: str) -> SearchParameter | None:
        return self._by_url.get(url)

    def parameters(self) -> list[SearchParameter]:
        """Every registered parameter, in the order they were added."""
        return list(self._by_url.values())

    @cache  # noqa: B019 - one registry per process; cleared on add()
    def for_type(self, resource_type: str) -> dict[str, SearchParameter]:
        """Every parameter that applies to ``resource_type``, common ones included."""
        merged = {code: param for code, param in self._common.items()
                  if param.base != ("DomainResource",)
                  or resource_type in domain_resource_types()}
        merged.update(self._by_type.get(resource_type, {}))
        return merged

    def types(self) -> Iterable[str]:
        return sorted(resource_types())


def parameter_from_definition(data: dict[str, Any],
                              known: dict[str, dict[str, Any]] | None = None) -> SearchParameter:
    """Build a SearchParameter from the compact spec dict or a SearchParameter resource."""
    components = tuple(
        Component(str(c.get("code") or _code_of(c.get("definition", ""), known)),
                  str(c.get("definition", "")), str(c.get("expression", "")),
                  _type_of(c.get("definition", ""), known))
        for c in data.get("component") or [])
    return SearchParameter(
        url=str(data.get("url", "")), code=str(data["code"]), base=tuple(data.get("base", ())),
        type=str(data["type"]), expression=data.get("expression"),
        target=tuple(data.get("target", ())), modifiers=tuple(data.get("modifier", ())),
        comparators=tuple(data.get("comparator", ())), components=components,
        multiple_or=data.get("multipleOr", True) is not False,
        multiple_and=data.get("multipleAnd", True) is not False)


def _code_of(url: str, known: dict[str, dict[str, Any]] | None) -> str:
    return str((known or {}).get(url, {}).get("code", url.rsplit("-", 1)[-1]))


def _type_of(url: str, known: dict[str, dict[str, Any]] | None) -> str:
    return str((known or {}).get(url, {}).get("type", "token"))


@cache
def default_registry() -> SearchRegistry:
    """The registry of all official R4 SearchParameters (custom ones are added at start-up)."""
    definitions = search_parameters()
    known = {d["url"]: d for d in definitions}
    registry = SearchRegistry()
    for definition in definitions:
        registry.add(parameter_from_definition(definition, known))
    return registry


def default_registry_with(custom: Iterable[SearchParameter]) -> SearchRegistry:
    """The official parameters plus ``custom`` ones (a custom parameter replaces an
    official one with the same URL): how a helper process rebuilds the registry its
    parent has in force from the custom parameters alone."""
    registry = default_registry().copy()
    for parameter in custom:
        registry.add(parameter)
    return registry
