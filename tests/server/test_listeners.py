"""``FhirService.start_listeners``: a listener given a socket bound by ``hygeia serve``
serves on it in every serving process; the others start in the first process only."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hygeia.cli.serving import ListenError, listen, listen_shared
from hygeia.server import FhirService
from hygeia.server.extensions import ListenAddress
from hygeia.store import open_repository
from tests.conftest import free_port


class Greeter:
    """Answers its name to each TCP connection, on the socket it adopted or bound."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: socket.socket | None = None
        self.started = False

    def start(self) -> None:
        if self.server is None:
            self.server = socket.create_server(("127.0.0.1", 0))
        self.started = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        assert self.server is not None
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.sendall(self.name.encode())

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


class SharedGreeter(Greeter):
    def adopt(self, server: socket.socket) -> None:
        self.server = server


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FhirService]:
    repository = open_repository(f"sqlite:///{tmp_path}/listeners.db")
    service = FhirService(repository)
    try:
        yield service
    finally:
        service.close()
        repository.close()


def greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        return connection.recv(64)


def test_a_later_process_starts_only_the_listeners_given_a_socket(
        service: FhirService) -> None:
    shared, alone = SharedGreeter("shared"), Greeter("alone")
    service.add_listener(shared)
    service.add_listener(alone)
    server = listen("127.0.0.1", 0)
    service.start_listeners({"shared": server}, first=False)
    assert (shared.started, alone.started) == (True, False)
    assert greeting(server.getsockname()[1]) == b"shared"  # on the adopted socket


def test_the_first_process_starts_every_listener(service: FhirService) -> None:
    shared, alone = SharedGreeter("shared"), Greeter("alone")
    service.add_listener(shared)
    service.add_listener(alone)
    server = listen("127.0.0.1", 0)
    service.start_listeners({"shared": server}, first=True)
    assert (shared.started, alone.started) == (True, True)
    assert shared.server is server


def test_a_socket_for_a_listener_that_cannot_adopt_it_refuses_to_start(
        service: FhirService) -> None:
    first, plain = SharedGreeter("first"), Greeter("plain")
    service.add_listener(first)
    service.add_listener(plain)
    with listen("127.0.0.1", 0) as server, \
            pytest.raises(RuntimeError, match="'plain', which cannot serve on a shared socket"):
        service.start_listeners({"plain": server})
    assert first.server is not None and first.server.fileno() == -1  # stopped again


def test_a_socket_for_a_listener_nobody_registered_refuses_to_start(
        service: FhirService) -> None:
    with listen("127.0.0.1", 0) as server, \
            pytest.raises(RuntimeError, match="'mllp', which no pillar registered"):
        service.start_listeners({"mllp": server})


def test_a_taken_address_names_its_listener_and_leaves_no_socket_open() -> None:
    free, taken = free_port(), listen("127.0.0.1", 0)
    port = taken.getsockname()[1]
    with taken, pytest.raises(ListenError) as refused:
        listen_shared([ListenAddress("first", "127.0.0.1", free),
                       ListenAddress("second", "127.0.0.1", port)])
    assert str(refused.value) == (f"second: 127.0.0.1:{port} is already in use (is another "
                                  "hygeia serve running?)")
    listen("127.0.0.1", free).close()  # the first one was closed again
