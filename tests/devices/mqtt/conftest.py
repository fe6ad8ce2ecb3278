"""A real ``hygeia serve --mqtt-url`` per backend, and a gateway name per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, ServerProcess, backend_server
from tests.devices.mqtt.broker import BROKER_URL, clear_retained, forget_session, new_gateway

# the broker forgets a test server's session after this (a run that dies leaves little)
SESSION_EXPIRY = "300"


def mqtt_flags(client_id: str) -> tuple[str, ...]:
    return ("--mqtt-url", BROKER_URL, "--mqtt-client-id", client_id,
            "--mqtt-session-expiry", SESSION_EXPIRY)


@pytest.fixture(scope="module", params=BACKENDS)
def mqtt_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ServerProcess]:
    client_id = f"hygeia-test-{uuid.uuid4().hex[:12]}"
    try:
        with backend_server(request, tmp_path_factory, "mqtt", *mqtt_flags(client_id)) as server:
            yield server
    finally:
        forget_session(client_id)


@pytest.fixture
def gateway() -> Iterator[str]:
    name = new_gateway()
    yield name
    clear_retained(f"hygeia/{name}/status")


def search(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    response = client.get(query)
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


def device_of(client: httpx.Client, gateway: str, device: str) -> dict[str, Any] | None:
    found = search(client, f"Device?identifier=urn:hygeia:mqtt:device%7C{gateway}/{device}")
    assert len(found) <= 1, found
    return found[0] if found else None
