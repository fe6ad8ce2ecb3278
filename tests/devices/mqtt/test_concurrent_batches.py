"""``--mqtt-storers``: with two storing threads on PostgreSQL (ADR 0047) a batch
waiting for the database does not hold up the messages behind it; with one (the
default) it does. Either way the waiting reading is stored, once, when it can be.

The test holds, from a transaction of its own, the lock a reading's batch takes
before storing it (the reading's key, :func:`~hygeia.devices.mqtt.payloads.message_key`),
so that batch waits, and publishes a reading from another device meanwhile.
(SQLite has one writer: a held transaction there stops every batch, and the
listener runs one storing thread whatever the flag says.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from hygeia.devices.mqtt.payloads import message_key
from hygeia.store import open_repository
from tests.conftest import ServerProcess, backend_server
from tests.devices.mqtt.broker import eventually, forget_session, mosquitto_pub
from tests.devices.mqtt.conftest import mqtt_flags
from tests.devices.mqtt.test_listener import observation, observations_of

HELD = 3.0  # seconds the test holds the first reading's lock at most

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["postgresql"])
def postgresql(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


@contextmanager
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           *flags: str) -> Iterator[ServerProcess]:
    client_id = f"hygeia-test-{uuid.uuid4().hex[:12]}"
    try:
        with backend_server(request, tmp_path_factory, "storers", *mqtt_flags(client_id),
                            *flags) as process:
            yield process
    finally:
        forget_session(client_id)


def free_reading_while_blocked(process: ServerProcess, gateway: str) -> list[float]:
    """Hold the blocked reading's lock, publish it and then a free one; the values
    of the free device's Observations stored while the lock is held (HELD s)."""
    mosquitto_pub(f"hygeia/{gateway}/warm-up/obs", orjson.dumps(observation(1)))
    eventually(lambda: observations_of(process, gateway, "warm-up"))
    blocked_topic = f"hygeia/{gateway}/blocked/obs"
    blocked = orjson.dumps(observation(60))
    repository = open_repository(process.db_url)
    try:
        with repository.transaction() as session:
            session.lock(f"Observation/{message_key(blocked_topic, blocked)}")
            mosquitto_pub(blocked_topic, blocked)
            time.sleep(0.5)  # the blocked batch has taken the reading and waits
            mosquitto_pub(f"hygeia/{gateway}/free/obs", orjson.dumps(observation(70)))
            deadline = time.monotonic() + HELD
            free: list[dict[str, object]] = []
            while not free and time.monotonic() < deadline:
                free = observations_of(process, gateway, "free")
                time.sleep(0.1)
            assert observations_of(process, gateway, "blocked") == []
    finally:
        repository.close()
    stored = eventually(lambda: observations_of(process, gateway, "blocked"))
    assert isinstance(stored, list) and [o["valueQuantity"]["value"] for o in stored] == [60]
    assert [o["valueQuantity"]["value"] for o in  # type: ignore[index]
            eventually(lambda: observations_of(process, gateway, "free"))] == [70]
    return [o["valueQuantity"]["value"] for o in free]  # type: ignore[index, misc]


def test_with_two_storers_a_batch_waiting_for_a_lock_does_not_hold_up_the_next(
        postgresql: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        gateway: str) -> None:
    with server(postgresql, tmp_path_factory, "--mqtt-storers", "2") as process:
        assert free_reading_while_blocked(process, gateway) == [70]


def test_with_one_storer_the_next_batch_waits(
        postgresql: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        gateway: str) -> None:
    with server(postgresql, tmp_path_factory) as process:
        assert free_reading_while_blocked(process, gateway) == []
