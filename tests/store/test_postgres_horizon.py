"""The change feed's horizon on PostgreSQL: callers arriving together share one
computation, and none is answered by a computation that began before it came."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hygeia.store import Repository
from hygeia.store.postgres import repository as postgres

pytestmark = pytest.mark.postgres


def test_callers_share_a_horizon_begun_after_they_came(postgres_repository: Repository,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    begun: list[int] = []
    lock = threading.Lock()

    def computed(connection: Any, sequence: str) -> tuple[int, int]:
        with lock:
            begun.append(len(begun) + 1)
            run = begun[-1]
        time.sleep(0.05)  # long enough for the other callers to arrive meanwhile
        return run * 10, run * 10  # a horizon that names the computation

    monkeypatch.setattr(postgres, "safe_horizon", computed)
    answers: list[tuple[int, int]] = []  # (computations begun when it came, its horizon)

    def call() -> None:
        with lock:
            came = len(begun)
        horizon = postgres_repository.feed_horizon()
        with lock:
            answers.append((came, horizon))

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert len(answers) == 12
    assert len(begun) < 12  # shared
    assert all(horizon > came * 10 for came, horizon in answers)  # begun after it came


def test_a_failed_computation_is_not_shared(postgres_repository: Repository,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def failing_once(connection: Any, sequence: str) -> tuple[int, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("connection lost")
        return 7, 7

    monkeypatch.setattr(postgres, "safe_horizon", failing_once)
    with pytest.raises(RuntimeError):
        postgres_repository.feed_horizon()
    assert postgres_repository.feed_horizon() == 7
