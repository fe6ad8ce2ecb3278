"""The analytics pillar and the ViewDefinition type as served processes find them.

Until the package is reinstalled (``pip install -e .`` reads the entry points in
pyproject.toml), the environment's metadata may not name them yet; the
``analytics_installed`` fixture then installs a dist-info that does, in a
temporary folder on ``PYTHONPATH``, as an installed package would have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest

PILLAR = "hygeia.analytics.pillar:PILLAR"
TYPE = "hygeia.analytics.view_type:VIEW_DEFINITION"


def _installed() -> bool:
    pillars = {entry.value for entry in entry_points(group="hygeia.pillars")}
    types = {entry.value for entry in entry_points(group="hygeia.resource_types")}
    return PILLAR in pillars and TYPE in types


@pytest.fixture(scope="module")
def analytics_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if _installed():
        yield
        return
    info = tmp_path_factory.mktemp("site") / "hygeia_analytics_tests-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hygeia-analytics-tests\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        f"[hygeia.pillars]\nanalytics = {PILLAR}\n\n"
        f"[hygeia.resource_types]\nViewDefinition = {TYPE}\n"
    )
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(info.parent), *filter(None, [before])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before

