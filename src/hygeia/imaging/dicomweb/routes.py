"""The DICOMweb paths under ``/dicomweb`` and what each one is.

================================================  =====  ==========================
path (below /dicomweb)                            verb   service
================================================  =====  ==========================
/studies, /studies/{s}                            POST   STOW-RS store
/studies, /series, /instances                     GET    QIDO-RS search (all)
/studies/{s}/series, /studies/{s}/instances       GET    QIDO-RS search in a study
/studies/{s}/series/{r}/instances                 GET    QIDO-RS search in a series
/studies/{s}[/series/{r}[/instances/{i}]]         GET    WADO-RS retrieve (multipart)
... each + /metadata                              GET    WADO-RS metadata (JSON)
/studies/{s}/series/{r}/instances/{i}/rendered    GET    WADO-RS rendered (PNG/JPEG)
================================================  =====  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hygeia.fhir.outcome import MethodNotAllowed, NotFound

PREFIX = "/dicomweb"
Service = Literal["stow", "qido", "wado", "metadata", "rendered"]
Level = Literal["study", "series", "instance"]


@dataclass(frozen=True, slots=True)
class Route:
    """What a request asks: the service, the level it works at and the UIDs in the path."""

    service: Service
    level: Level
    study: str | None = None
    series: str | None = None
    instance: str | None = None

    @property
    def reads(self) -> bool:
        return self.service != "stow"


def parse_route(method: str, path: str) -> Route:
    """The route of ``method path`` (path from ``/dicomweb`` on), or a 404/405 saying why."""
    parts = [part for part in path.removeprefix(PREFIX).split("/") if part]
    route = _match(parts)
    if route is None:
        raise NotFound(f"There is no DICOMweb resource at {path[:200]}; the services are "
                       f"under {PREFIX}/studies, {PREFIX}/series and {PREFIX}/instances.",
                       expression="path")
    allowed = "POST" if route.service == "stow" else "GET"
    if route.level == "study" and route.service in ("qido", "wado"):
        allowed = "GET, POST"  # /studies[/{s}]: search or retrieve, or store
    verb = "GET" if method == "HEAD" else method
    if verb not in allowed.split(", "):
        raise MethodNotAllowed(f"{path[:200]} answers {allowed} only.", expression="method",
                               headers={"Allow": allowed})
    if route.service == "qido" and verb == "POST":
        return Route("stow", "study")
    if route.service == "wado" and route.level == "study" and verb == "POST":
        return Route("stow", "study", route.study)
    return route


def _match(parts: list[str]) -> Route | None:
    if not parts:
        return None
    head, rest = parts[0], parts[1:]
    if head in ("series", "instances") and not rest:
        return Route("qido", "series" if head == "series" else "instance")
    if head != "studies":
        return None
    if not rest:
        return Route("qido", "study")
    study, rest = rest[0], rest[1:]
    return _in_study(study, rest)


def _in_study(study: str, rest: list[str]) -> Route | None:
    if not rest:
        return Route("wado", "study", study)
    if rest == ["metadata"]:
        return Route("metadata", "study", study)
    if rest == ["series"]:
        return Route("qido", "series", study)
    if rest == ["instances"]:
        return Route("qido", "instance", study)
    if rest[0] != "series" or len(rest) < 2:
        return None
    series, rest = rest[1], rest[2:]
    if not rest:
        return Route("wado", "series", study, series)
    if rest == ["metadata"]:
        return Route("metadata", "series", study, series)
    if rest == ["instances"]:
        return Route("qido", "instance", study, series)
    if rest[0] != "instances" or len(rest) < 2 or len(rest) > 3:
        return None
    instance, rest = rest[1], rest[2:]
    if not rest:
        return Route("wado", "instance", study, series, instance)
    if rest[0] in ("metadata", "rendered"):
        return Route(rest[0], "instance", study, series, instance)  # type: ignore[arg-type]
    return None
