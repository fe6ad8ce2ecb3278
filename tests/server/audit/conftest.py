"""A service with the audit trail on, for the audit tests on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hygeia.server import AuditSettings, FhirService, JobSettings, Settings
from hygeia.store import Repository


@pytest.fixture
def audited(repository: Repository, tmp_path: Path) -> Iterator[FhirService]:
    service = FhirService(repository, Settings(audit=AuditSettings(enabled=True),
                                                jobs=JobSettings(files_dir=str(tmp_path / "f"))))
    yield service
    service.close()
