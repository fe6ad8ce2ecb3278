"""Fixtures for the tests that start servers of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, _drop_database


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own on each backend (a PostgreSQL one is dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/own.db"
        return
    base = request.getfixturevalue("postgres_url").rsplit("/", 1)[0]
    url = f"{base}/hygeia_own_{uuid.uuid4().hex[:8]}"
    yield url
    _drop_database(url)
