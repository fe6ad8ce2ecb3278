"""The DICOMweb paths and the service each one is."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import MethodNotAllowed, NotFound
from hygeia.imaging.dicomweb.routes import Route, parse_route


@pytest.mark.parametrize(("method", "path", "route"), [
    ("POST", "/dicomweb/studies", Route("stow", "study")),
    ("POST", "/dicomweb/studies/1.2", Route("stow", "study", "1.2")),
    ("GET", "/dicomweb/studies", Route("qido", "study")),
    ("GET", "/dicomweb/series", Route("qido", "series")),
    ("GET", "/dicomweb/instances", Route("qido", "instance")),
    ("GET", "/dicomweb/studies/1.2/series", Route("qido", "series", "1.2")),
    ("GET", "/dicomweb/studies/1.2/instances", Route("qido", "instance", "1.2")),
    ("GET", "/dicomweb/studies/1.2/series/3/instances", Route("qido", "instance", "1.2", "3")),
    ("GET", "/dicomweb/studies/1.2", Route("wado", "study", "1.2")),
    ("HEAD", "/dicomweb/studies/1.2", Route("wado", "study", "1.2")),
    ("GET", "/dicomweb/studies/1.2/metadata", Route("metadata", "study", "1.2")),
    ("GET", "/dicomweb/studies/1.2/series/3", Route("wado", "series", "1.2", "3")),
    ("GET", "/dicomweb/studies/1.2/series/3/metadata", Route("metadata", "series", "1.2", "3")),
    ("GET", "/dicomweb/studies/1/series/2/instances/3", Route("wado", "instance", "1", "2", "3")),
    ("GET", "/dicomweb/studies/1/series/2/instances/3/metadata",
     Route("metadata", "instance", "1", "2", "3")),
    ("GET", "/dicomweb/studies/1/series/2/instances/3/rendered",
     Route("rendered", "instance", "1", "2", "3")),
])
def test_paths(method: str, path: str, route: Route) -> None:
    assert parse_route(method, path) == route


@pytest.mark.parametrize("path", ["/dicomweb", "/dicomweb/patients", "/dicomweb/studies/1/x",
                                  "/dicomweb/studies/1/series/2/instances/3/frames/1",
                                  "/dicomweb/studies/1/series/2/x"])
def test_unknown_paths_are_404(path: str) -> None:
    with pytest.raises(NotFound, match="no DICOMweb resource"):
        parse_route("GET", path)


def test_wrong_methods_are_405_with_allow() -> None:
    with pytest.raises(MethodNotAllowed) as raised:
        parse_route("DELETE", "/dicomweb/studies/1/series/2")
    assert raised.value.headers["Allow"] == "GET"
    with pytest.raises(MethodNotAllowed):
        parse_route("POST", "/dicomweb/studies/1/metadata")
