"""``hygeia serve --workers 2 --mllp-port``: the MLLP listener serves in both serving
processes, on the one port ``hygeia serve`` bound before the fork (ADR 0029).

Which process holds a connection is read from Linux /proc: the server's end of the
connection is a socket that only the process that accepted it has a descriptor of.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import hl7.client
import pytest

from tests.conftest import BACKENDS, backend_server, free_port
from tests.devices.mllp.conftest import MllpServer, adt, segment, unframe, unique

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads which process holds a socket from /proc")

CONNECTIONS = 8


@pytest.fixture(scope="module", params=BACKENDS)
def two_workers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[MllpServer]:
    port = free_port()
    with backend_server(request, tmp_path_factory, "mllp_workers", "--workers", "2",
                        "--mllp-port", str(port)) as process:
        yield MllpServer(process, port)


def serving_processes(server: MllpServer) -> set[int]:
    """The serving processes (the supervisor's children, without offload helpers)."""
    supervisor = server.process.process.pid
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {int(pid) for pid in children
            if b"offload" not in Path(f"/proc/{pid}/cmdline").read_bytes()}


def holder(client: socket.socket, processes: set[int]) -> int:
    """The process that accepted ``client``'s connection (it has been answered once)."""
    here, there = client.getsockname()[1], client.getpeername()[1]
    inode = _server_end_inode(local_port=there, remote_port=here)
    owners = {pid for pid in processes
              if any(Path(f"/proc/{pid}/fd/{fd}").readlink() == Path(f"socket:[{inode}]")
                     for fd in _fds(pid))}
    assert len(owners) == 1, (inode, owners)
    return owners.pop()


def _server_end_inode(local_port: int, remote_port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == \
                (local_port, remote_port):
            return fields[9]
    raise AssertionError(f"no server end for port {remote_port}")


def _fds(pid: int) -> list[str]:
    return [entry.name for entry in Path(f"/proc/{pid}/fd").iterdir()]


def exchange(client: hl7.client.MLLPClient, message: str) -> str:
    return unframe(client.send_message(message))[0]


def open_clients(stack: ExitStack, port: int, count: int) -> list[hl7.client.MLLPClient]:
    return [stack.enter_context(hl7.client.MLLPClient("127.0.0.1", port))
            for _ in range(count)]


def test_connections_are_served_by_both_processes_and_all_stored_once(
        two_workers: MllpServer) -> None:
    processes = serving_processes(two_workers)
    assert len(processes) == 2
    controls: list[str] = []
    with ExitStack() as stack:  # the first connections after the start, kept open
        clients = open_clients(stack, two_workers.port, CONNECTIONS)
        for number in range(3):
            for client in clients:
                controls.append(f"W{number}{unique()}")
                ack = exchange(client, adt(control_id=controls[-1]))
                assert segment(ack, "MSA")[1:3] == ["AA", controls[-1]]
        holders = {holder(client.socket, processes) for client in clients}
    # the kernel handed them to both: neither process began accepting before the other
    # was ready (else the first takes every connection waiting)
    assert holders == processes
    found = two_workers.process.client.get(
        "MessageHeader", params={"response-id": ",".join(controls), "_count": "1000",
                                 "_elements": "id"}).json()
    assert found["total"] == len(controls) == len(set(controls))
    versions = {entry["resource"]["meta"]["versionId"] for entry in found["entry"]}
    assert versions == {"1"}  # each record written once


def test_a_copy_racing_on_both_processes_is_stored_once(two_workers: MllpServer) -> None:
    processes = serving_processes(two_workers)
    racing = adt(control_id=f"XRACE{unique()}")
    with ExitStack() as stack:
        by_process: dict[int, hl7.client.MLLPClient] = {}
        for client in open_clients(stack, two_workers.port, 3 * CONNECTIONS):
            # answered once, so the connection has been accepted
            assert segment(exchange(client, adt()), "MSA")[1] == "AA"
            by_process.setdefault(holder(client.socket, processes), client)
            if len(by_process) == 2:
                break
        assert len(by_process) == 2
        start = threading.Barrier(len(by_process))
        answers: list[str] = []

        def send_copy(client: hl7.client.MLLPClient) -> None:
            start.wait()
            answers.append(exchange(client, racing))

        threads = [threading.Thread(target=send_copy, args=(client,))
                   for client in by_process.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == 2 and all(segment(ack, "MSA")[1] == "AA" for ack in answers)
    assert answers[0] == answers[1]  # one processing; the other answered from its record
    control = segment(answers[0], "MSA")[2]
    found = two_workers.process.client.get(f"MessageHeader?response-id={control}").json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["meta"]["versionId"] == "1"


def test_a_taken_mllp_port_fails_at_start_with_one_error_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hygeia.cli.main", "serve", "--db",
             f"sqlite:///{tmp_path}/taken.db", "--port", str(free_port()), "--workers", "2",
             "--mllp-port", str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"error: mllp: 127.0.0.1:{port} is already in use (is another "
                             "hygeia serve running?)\n")
    assert not (tmp_path / "taken.db").exists()  # refused before anything was opened
