"""The load journal's primitives: marks commit with the transaction they are written in,
and ``recording`` puts a Bundle's mark into that Bundle's transaction only."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from hygeia.server import FhirRequest, FhirService
from hygeia.server.loading.journal import Mark, file_key, find, record, recording
from tests.helpers import patient


def new_mark(progress: int = 3, complete: bool = False) -> Mark:
    return Mark(uuid.uuid4().hex, "some/file.ndjson", progress, complete)


def create(service: FhirService) -> None:
    service.handle(FhirRequest("POST", "Patient", body=patient("journal")))


def test_a_mark_commits_with_its_transaction_or_not_at_all(service: FhirService) -> None:
    kept, lost = new_mark(), new_mark()
    with service.transaction() as session:
        record(session, [kept])
    with pytest.raises(RuntimeError), service.transaction() as session:
        record(session, [lost])
        raise RuntimeError("the transaction fails")
    assert find(service.repository, kept.source, kept.path) == kept
    assert find(service.repository, lost.source, lost.path) is None
    with service.transaction() as session:  # a later mark of the same file replaces it
        record(session, [Mark(kept.source, "moved.ndjson", 9, True)])
    assert find(service.repository, kept.source, "here") == Mark(kept.source, "here", 9, True)


def test_recording_marks_the_first_transaction_of_this_thread_only(
        service: FhirService) -> None:
    mark = new_mark(1, True)
    with recording(service, mark) as written:
        other = threading.Thread(target=create, args=(service,))  # the committer thread's
        other.start()
        other.join()
        assert written == []  # another thread's transaction did not take the mark
        assert find(service.repository, mark.source, mark.path) is None
        create(service)
        assert written == [mark]
        create(service)  # only the first transaction records it
    assert find(service.repository, mark.source, mark.path) == mark
    assert "transaction" not in vars(service)  # the service is as it was


def test_a_file_is_known_by_its_bytes(tmp_path: Path) -> None:
    first, second, changed = (tmp_path / name for name in ("a.ndjson", "b.ndjson", "c.ndjson"))
    first.write_bytes(b'{"resourceType":"Patient"}\n')
    second.write_bytes(first.read_bytes())
    changed.write_bytes(first.read_bytes() + b"\n")
    assert file_key(first) == file_key(second) != file_key(changed)
