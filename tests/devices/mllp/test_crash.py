"""An acknowledged message survives ``kill -9`` of the server right after its ACK."""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS, ServerProcess, backend_server, free_port
from tests.devices.mllp.conftest import adt, segment, send, unique


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """The request naming the backend, as :func:`backend_server` wants it."""
    return request


def test_data_acknowledged_before_a_kill_9_is_there_after_the_restart(
        backend: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    mrns = [f"K{unique()}" for _ in range(5)]
    with backend_server(backend, tmp_path_factory, "crash", "--mllp-port", str(port)) as first:
        for index, mrn in enumerate(mrns):
            ack = send(port, adt(control_id=f"KILL{index}{mrn}", mrn=mrn))
            assert segment(ack, "MSA")[1] == "AA"
        first.kill()  # SIGKILL, the moment the last ACK arrived
        second = ServerProcess(first.db_url, "--mllp-port", str(free_port()))
        try:
            for index, mrn in enumerate(mrns):
                patients = second.client.get(f"Patient?identifier={mrn}").json()
                assert patients["total"] == 1, mrn
                headers = second.client.get(f"MessageHeader?response-id=KILL{index}{mrn}")
                assert headers.json()["total"] == 1
        finally:
            second.stop()
