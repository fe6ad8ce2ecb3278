"""The clinical pillar as a served process finds it: through its entry point.

Until the package is reinstalled (``pip install -e .`` reads the entry point in
pyproject.toml), the environment's metadata may not name the pillar yet; the
``clinical_pillar`` fixture then installs a dist-info that does, in a temporary
folder on ``PYTHONPATH``, as an installed package would have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ENTRY = "hygeia.clinical.pillar:PILLAR"


@pytest.fixture
def clinical_pillar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if any(entry.value == ENTRY for entry in entry_points(group="hygeia.pillars")):
        yield
        return
    info = tmp_path / "site" / "hygeia_clinical_tests-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hygeia-clinical-tests\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(f"[hygeia.pillars]\nclinical = {ENTRY}\n")
    path = [str(info.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    yield
