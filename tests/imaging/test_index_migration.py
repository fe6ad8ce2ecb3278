"""Imaging migration 2: an archive indexed under migration 1 (``imaging_name_word``)
keeps its fuzzy PatientName matches once its words are moved to ``imaging_name_index``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hygeia.imaging import tables
from hygeia.imaging.archive import Archive
from hygeia.store import open_repository, writing
from hygeia.store.migrations import registry as registry_module
from hygeia.store.migrations.model import Stream
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody opened yet (PostgreSQL: created, dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/imaging-v1.db"
        return
    admin = request.getfixturevalue("postgres_url")
    name = f"hygeia_imaging_mig_{uuid.uuid4().hex[:10]}"
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _study_at_version_1(session: object, uid: str, name: str, words: list[str]) -> None:
    """The rows migration 1's code wrote for one study (the words as it split them)."""
    execute = session.execute  # type: ignore[attr-defined]
    execute("INSERT INTO imaging_study (study_uid, patient_id, patient_name, name_key, "
            "birth_date, sex, study_date, study_time, accession, study_id, description, "
            "modalities, series_count, instance_count, source_ae) VALUES "
            "(?, 'P', ?, ?, '', '', '', '', '', '', '', 'CT', 1, 1, 'AE')",
            (uid, name, name.upper()))
    execute("INSERT INTO imaging_study_attrs (study_uid, attrs) VALUES (?, '{}')", (uid,))
    for word in words:
        execute("INSERT INTO imaging_name_word (word, study_uid) VALUES (?, ?)", (word, uid))


def test_fuzzy_matches_survive_the_move_to_the_name_index(
        fresh_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = registry_module._STREAMS[tables.STREAM]
    monkeypatch.setitem(registry_module._STREAMS, tables.STREAM,
                        Stream(full.name, full.migrations[:1]))
    with open_repository(fresh_url, migrate=True) as repository, \
            writing(repository) as session:
        _study_at_version_1(session, "1.2.3.1", "Doe^John", ["DOE", "JOHN"])
        _study_at_version_1(session, "1.2.3.2", "Smith^Anna^Maria", ["ANNA", "MARIA", "SMITH"])
        _study_at_version_1(session, "1.2.3.3", "Johnson", ["JOHNSON"])
    monkeypatch.setitem(registry_module._STREAMS, tables.STREAM, full)
    with open_repository(fresh_url, migrate=True) as repository:
        archive = Archive(repository, tmp_path / "dicom")

        def fuzzy(name: str) -> list[str]:
            return [s.study_uid for s in archive.find_studies({"PatientName": name},
                                                              fuzzy=True)]

        assert fuzzy("jo") == ["1.2.3.1", "1.2.3.3"]
        assert fuzzy("john doe") == ["1.2.3.1"]
        assert fuzzy("mar smi an") == ["1.2.3.2"]
        assert fuzzy("doe anna") == []
        with writing(repository) as session:
            names = session.execute("SELECT word, words, study_uid FROM imaging_name_index "
                                    "ORDER BY study_uid, word").fetchall()
        # the order of a name's words in ``words`` is the database's (either will do)
        assert [(w, sorted(ws.split()), uid) for w, ws, uid in names[:2]] == [
            ("DOE", ["DOE", "JOHN"], "1.2.3.1"), ("JOHN", ["DOE", "JOHN"], "1.2.3.1")]
        assert all(ws.startswith(" ") and ws.endswith(" ") for _, ws, _ in names)
        assert len(names) == 6
