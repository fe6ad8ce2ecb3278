"""The engine on a real service, on each backend (``Engine`` in test_engine.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hygeia.server import FhirService
from tests.clinical.news2.test_engine import Engine


@pytest.fixture
def engine(service: FhirService) -> Iterator[Engine]:
    running = Engine(service)
    yield running
    running.runner.stop()
