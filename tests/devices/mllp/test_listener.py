"""The MLLP listener of a real ``hygeia serve --mllp-port``: framing over real sockets,
slow senders, oversize messages and the connection limits."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.devices.mllp.conftest import (
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MllpServer,
    adt,
    connect,
    framed,
    read_blocks,
    segment,
    send,
    unique,
)


def test_python_hl7_client_gets_aa_echoing_the_control_id(mllp: MllpServer) -> None:
    ack = send(mllp.port, adt(control_id="LISTEN0001"))
    assert segment(ack, "MSA")[1:3] == ["AA", "LISTEN0001"]
    header = ack.split("\r")[0].split("|")
    assert header[2:6] == ["HYGEIA", "HOSP", "ADT1", "GOODHEALTH"]  # sender and receiver swap
    assert header[8] == "ACK^A01^ACK"


def test_a_message_sent_a_few_bytes_at_a_time_is_answered_once_whole(
        mllp: MllpServer) -> None:
    data = framed(adt(control_id="SPLIT0001"))
    with connect(mllp.port) as connection:
        for start in range(0, len(data), 7):
            connection.sendall(data[start:start + 7])
            time.sleep(0.002)
        acks = read_blocks(connection, 1)
    assert [segment(ack, "MSA")[1:3] for ack in acks] == [["AA", "SPLIT0001"]]


def test_messages_merged_in_one_write_are_answered_in_order(mllp: MllpServer) -> None:
    ids = [f"MERGED{index}" for index in range(3)]
    with connect(mllp.port) as connection:
        connection.sendall(b"".join(framed(adt(control_id=id)) for id in ids))
        acks = read_blocks(connection, 3)
    assert [segment(ack, "MSA")[2] for ack in acks] == ids


def test_a_large_message_under_the_limit_is_accepted(mllp: MllpServer) -> None:
    note = "NTE|1||" + "x" * 60_000
    message = adt(control_id="LARGE0001") + "\r".join([note] * 12) + "\r"  # ~720 KB
    assert len(message) > 700_000
    assert segment(send_raw(mllp.port, message), "MSA")[1:3] == ["AA", "LARGE0001"]


def send_raw(port: int, message: str) -> str:
    with connect(port) as connection:
        connection.sendall(framed(message))
        return read_blocks(connection, 1)[0]


def test_an_oversize_message_is_answered_ar_and_the_connection_closed(
        mllp: MllpServer) -> None:
    message = adt(control_id="HUGE0001") + "NTE|1||" + "y" * (1024 * 1024 + 10) + "\r"
    with connect(mllp.port) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(framed(message))  # the server may answer before taking it all
        acks = read_blocks(connection, 2, timeout=10)
    assert len(acks) == 1, "the connection must close after the refusal"
    assert segment(acks[0], "MSA")[1:3] == ["AR", "HUGE0001"]
    error = segment(acks[0], "ERR")
    assert error[3].startswith("207^") and "1048576 bytes" in error[8]


def test_concurrent_senders_are_all_answered_and_a_copy_racing_is_stored_once(
        mllp: MllpServer) -> None:
    racing = adt(control_id=f"RACE{unique()}")

    def sender(index: int) -> list[str]:
        messages = [racing] + [adt(control_id=f"P{index}N{number}") for number in range(5)]
        with connect(mllp.port) as connection:
            answers = []
            for message in messages:
                connection.sendall(framed(message))
                answers.extend(read_blocks(connection, 1))
            return answers

    with ThreadPoolExecutor(MAX_CONNECTIONS - 1) as pool:
        results = list(pool.map(sender, range(MAX_CONNECTIONS - 1)))
    assert all(len(answers) == 6 for answers in results)
    assert all(segment(ack, "MSA")[1] == "AA" for answers in results for ack in answers)
    assert len({answers[0] for answers in results}) == 1  # the same ACK for every copy
    control = segment(results[0][0], "MSA")[2]
    bundle = mllp.process.client.get(f"MessageHeader?response-id={control}").json()
    assert bundle["total"] == 1


def test_a_stalled_sender_does_not_hold_up_another(mllp: MllpServer) -> None:
    stalled_data = framed(adt(control_id="STALLED01"))
    with connect(mllp.port) as stalled:
        stalled.sendall(stalled_data[:40])  # half a message, then nothing
        started = time.monotonic()
        ack = send(mllp.port, adt(control_id="BRISK0001"))
        assert segment(ack, "MSA")[1:3] == ["AA", "BRISK0001"]
        assert time.monotonic() - started < 3
        stalled.sendall(stalled_data[40:])  # it resumes within the timeout
        assert segment(read_blocks(stalled, 1)[0], "MSA")[1:3] == ["AA", "STALLED01"]


def test_a_silent_connection_is_closed_after_the_idle_timeout(mllp: MllpServer) -> None:
    with connect(mllp.port) as connection:
        started = time.monotonic()
        connection.settimeout(IDLE_TIMEOUT + 10)
        assert connection.recv(10) == b""  # closed by the server
        assert IDLE_TIMEOUT - 0.5 < time.monotonic() - started < IDLE_TIMEOUT + 5


def test_connections_beyond_the_limit_are_closed_at_once(mllp: MllpServer) -> None:
    held = [connect(mllp.port) for _ in range(MAX_CONNECTIONS)]
    try:
        for connection in held:  # each one is served: the server answers on all of them
            connection.sendall(framed(adt()))
            assert segment(read_blocks(connection, 1)[0], "MSA")[1] == "AA"
        with connect(mllp.port) as extra:
            extra.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert extra.recv(10) == b""
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.3)  # the server notices the closes
    assert segment(send(mllp.port, adt()), "MSA")[1] == "AA"


@pytest.mark.parametrize("noise", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff" * 50],
                         ids=["http-request", "binary"])
def test_bytes_outside_blocks_are_ignored(mllp: MllpServer, noise: bytes) -> None:
    with connect(mllp.port) as connection:
        connection.sendall(noise + framed(adt(control_id="AFTERNOISE")))
        ack = read_blocks(connection, 1)[0]
    assert segment(ack, "MSA")[1:3] == ["AA", "AFTERNOISE"]


def test_the_listener_binds_the_address_serve_host_names(tmp_path: Path) -> None:
    port, mllp_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hygeia.cli.main", "serve", "--host", "127.0.0.2", "--port",
         str(port), "--base-url", f"http://127.0.0.2:{port}", "--db",
         f"sqlite:///{tmp_path}/host.db", "--mllp-port", str(mllp_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ack = send(mllp_port, adt(control_id="HOST0001"), host="127.0.0.2")
                break
            except ConnectionRefusedError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert segment(ack, "MSA")[1:3] == ["AA", "HOST0001"]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", mllp_port), timeout=2).close()
    finally:
        server.terminate()
        server.wait(20)
