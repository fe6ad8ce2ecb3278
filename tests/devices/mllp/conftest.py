"""One real ``hygeia serve --mllp-port`` per backend for the MLLP tests, and ways to
talk to it: python-hl7's MLLP client, and raw sockets for what a client library
would never send (split blocks, stalls, garbage)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hl7.client
import pytest

from tests.conftest import BACKENDS, FIXTURES, ServerProcess, backend_server, free_port

IDLE_TIMEOUT = 4.0
MAX_CONNECTIONS = 6


@dataclass
class MllpServer:
    process: ServerProcess
    port: int

    @property
    def db_url(self) -> str:
        return self.process.db_url


@pytest.fixture(scope="package", params=BACKENDS)
def mllp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[MllpServer]:
    port = free_port()
    with backend_server(request, tmp_path_factory, "mllp", "--mllp-port", str(port),
                        "--mllp-idle-timeout", str(IDLE_TIMEOUT),
                        "--mllp-max-connections", str(MAX_CONNECTIONS)) as process:
        yield MllpServer(process, port)


def unique() -> str:
    return uuid.uuid4().hex[:10].upper()


def adt(event: str = "A01", *, control_id: str | None = None, mrn: str | None = None,
        visit: str | None = None, bed: str = "ICU^101^A^GOODHEALTH", accept: str = "",
        application: str = "", message_type: str = "ADT", sender: str = "ADT1") -> str:
    """An ADT message (ER7, CR-separated) with fresh identifiers unless given."""
    control_id = control_id or f"C{unique()}"
    mrn, visit = mrn or f"M{unique()}", visit or f"V{unique()}"
    pv1 = ["PV1", "1", "I", bed] + [""] * 15 + [f"{visit}^^^GOODHEALTH^VN"]
    return "\r".join([
        f"MSH|^~\\&|{sender}|GOODHEALTH|HYGEIA|HOSP|20240301080000+0000||{message_type}^{event}|"
        f"{control_id}|P|2.5|||{accept}|{application}",
        f"EVN|{event}|20240301080000+0000",
        f"PID|1||{mrn}^^^GOODHEALTH^MR||Everyman^Adam||19800615|M",
        "|".join(pv1)]) + "\r"


def fixture_message(name: str) -> str:
    """A fixture file of tests/fixtures/hl7v2 (written with line feeds) as ER7."""
    return (FIXTURES / "hl7v2" / name).read_text().replace("\n", "\r")


def send(port: int, message: str, host: str = "127.0.0.1") -> str:
    """Send with python-hl7's MLLP client; the acknowledgement's text (unframed)."""
    with hl7.client.MLLPClient(host, port) as client:
        answer: bytes = client.send_message(message)
    return unframe(answer)[0]


def unframe(data: bytes) -> list[str]:
    return [block.lstrip(b"\x0b").decode() for block in data.split(b"\x1c\r") if block]


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return connection


def read_blocks(connection: socket.socket, count: int, timeout: float = 10.0) -> list[str]:
    """The next ``count`` MLLP blocks from ``connection`` (fewer if it closes)."""
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"\x1c\r") < count and time.monotonic() < deadline:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return unframe(data)


def framed(message: str) -> bytes:
    return b"\x0b" + message.encode() + b"\x1c\r"


def segment(ack: str, name: str) -> list[str]:
    """The fields of the first ``name`` segment of ``ack`` (index = HL7 field number)."""
    for line in ack.split("\r"):
        if line.startswith(name + "|"):
            return line.split("|")
    raise AssertionError(f"no {name} segment in {ack!r}")


def fixtures_folder() -> Path:
    return FIXTURES / "hl7v2"
