"""Fixtures of the store's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hygeia.store import Repository, open_repository
from tests.conftest import _truncate_postgres


@pytest.fixture
def postgres_repository(postgres_url: str) -> Iterator[Repository]:
    """PostgreSQL alone, for what only it does: it hands out seqs before commit (where
    SQLite's one writer commits them in order), and computes a horizon from its locks."""
    repository = open_repository(postgres_url)
    _truncate_postgres(postgres_url)
    try:
        yield repository
    finally:
        repository.close()
