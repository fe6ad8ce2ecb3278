"""What a CDS service is, what it is called with, and the cards it answers (CDS Hooks 2.0)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Indicator = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class HookCall:
    """One validated hook request, with its prefetch complete (sent, or fetched)."""

    service: str
    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any]  # key -> resource, Bundle, or None (nothing found)

    def bundle(self, key: str) -> list[dict[str, Any]]:
        """The resources of a search prefetch (an empty list for none)."""
        found = self.prefetch.get(key)
        if not isinstance(found, dict):
            return []
        if found.get("resourceType") != "Bundle":
            return [found]
        return [entry["resource"] for entry in found.get("entry") or []
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)]

    def resource(self, key: str) -> dict[str, Any] | None:
        found = self.prefetch.get(key)
        return found if isinstance(found, dict) and found.get("resourceType") != "Bundle" \
            else None


@dataclass(frozen=True, slots=True)
class Source:
    """A card's ``source``: who says so (with a link to the guidance behind it)."""

    label: str
    url: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, **({"url": self.url} if self.url else {})}


def card(summary: str, indicator: Indicator, source: Source, *, detail: str | None = None,
         suggestions: list[dict[str, Any]] | None = None,
         links: list[dict[str, Any]] | None = None,
         override_reasons: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A CDS Hooks card; ``summary`` is cut to the spec's 140 characters."""
    answer: dict[str, Any] = {"uuid": str(uuid.uuid4()), "summary": summary[:140],
                              "indicator": indicator, "source": source.as_json()}
    if detail:
        answer["detail"] = detail
    if suggestions:
        answer["suggestions"] = [{"uuid": str(uuid.uuid4()), **suggestion}
                                 for suggestion in suggestions]
        answer["selectionBehavior"] = "at-most-one"
    if links:
        answer["links"] = links
    if override_reasons:
        answer["overrideReasons"] = override_reasons
    return answer


@dataclass(frozen=True, slots=True)
class CdsService:
    """One service as discovery lists it, and the function that answers its hook."""

    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    answer: Callable[[HookCall], list[dict[str, Any]]] = field(repr=False)

    def discovery(self) -> dict[str, Any]:
        return {"hook": self.hook, "id": self.id, "title": self.title,
                "description": self.description, "prefetch": dict(self.prefetch)}
