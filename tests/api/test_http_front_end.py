"""The HTTP front end (api/http) under attack, through real sockets against real servers.

Issue 13: stalled clients froze the server (item 2), a second server could
share the port (item 10), the Host header was reflected into links and
discovery (item 12), and the HTTP layer answered its own errors with empty
bodies (item 14).
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import orjson
import pytest

from tests.api.smart import ASSERTION_TYPE, BackendKey, cli_json
from tests.conftest import BACKENDS, ServerProcess, backend_server, free_port
from tests.helpers import patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}
THREADS = 2
STALLED = 2 * THREADS  # the test: twice the thread count of stalled connections
ATTACKER = "127.0.0.2"  # the whole 127/8 block is loopback on Linux
TIMEOUTS = ("--threads", str(THREADS), "--header-timeout", "2", "--body-timeout", "2")


def connect(source: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response read off a raw socket, not a byte further (pipelined answers follow):
    status, headers (lower-case names), body."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    headers = {name.lower(): value for name, value in headers.items()}
    body = b""
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with contextlib.closing(connect(port=port)) as sock:
        sock.sendall(request)
        return read_answer(sock)


def assert_outcome(answer: tuple[int, dict[str, str], bytes], status: int) -> str:
    """The answer has ``status`` and an OperationOutcome body; returns its sentence."""
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"].startswith("application/fhir+json")
    outcome = orjson.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    text: str = outcome["issue"][0]["diagnostics"]
    assert text.endswith(".")
    return text


def stall(port: int, count: int, request: bytes) -> list[socket.socket]:
    """``count`` connections from the attacker's address that send ``request`` and stop."""
    held = []
    for _ in range(count):
        sock = connect(ATTACKER, port)
        sock.sendall(request)
        held.append(sock)
    return held


STALLED_BODY = (b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json"
                b"\r\nContent-Length: 100000\r\n\r\n{\"resourceType\"")


@pytest.fixture(scope="module", params=BACKENDS)
def front(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ServerProcess]:
    """A server with small timeouts and 2 threads, per backend, shared by this module."""
    with backend_server(request, tmp_path_factory, "front", *TIMEOUTS,
                        "--max-client-connections", "8") as server:
        yield server


def test_stalled_bodies_do_not_hold_the_threads(front: ServerProcess) -> None:
    created = front.client.post("Patient", content=orjson.dumps(patient()), headers=FHIR_JSON)
    assert created.status_code == 201
    held = stall(front.port, STALLED, STALLED_BODY)
    try:
        time.sleep(0.3)  # the stalled requests are in, waiting for their bodies
        for path in ("metadata", f"Patient/{created.json()['id']}"):
            started = time.monotonic()
            answer = httpx.get(f"{front.base}/{path}", timeout=5)
            assert answer.status_code == 200
            assert time.monotonic() - started < 1.0, f"{path} waited behind stalled clients"
    finally:
        for sock in held:
            sock.close()


def test_a_stalled_body_is_answered_408_and_closed(front: ServerProcess) -> None:
    with contextlib.closing(connect(port=front.port)) as sock:
        sock.sendall(STALLED_BODY)
        started = time.monotonic()
        text = assert_outcome(read_answer(sock), 408)
        assert 1.5 < time.monotonic() - started < 5
        assert "body" in text
        assert sock.recv(100) == b""  # closed


def test_a_stalled_head_is_answered_408_and_closed(front: ServerProcess) -> None:
    with contextlib.closing(connect(port=front.port)) as sock:
        sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n")  # never ends
        assert "head" in assert_outcome(read_answer(sock), 408)
        assert sock.recv(100) == b""


def test_a_head_sent_byte_by_byte_still_times_out(front: ServerProcess) -> None:
    """The header timeout counts from the first byte: trickling does not extend it."""
    with contextlib.closing(connect(port=front.port)) as sock:
        started = time.monotonic()
        for byte in b"GET /fhir/metadata HTTP/1.1\r\nX-Slow: " + b"a" * 40:
            sock.send(bytes([byte]))
            if select.select([sock], [], [], 0.2)[0]:  # the answer has come
                break
        assert_outcome(read_answer(sock), 408)
        assert 1.5 < time.monotonic() - started < 3


def test_connections_per_address_are_capped(front: ServerProcess) -> None:
    held = [connect(ATTACKER, front.port) for _ in range(8)]
    try:
        with contextlib.closing(connect(ATTACKER, front.port)) as extra:
            extra.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
            text = assert_outcome(read_answer(extra), 429)
            assert ATTACKER in text
        assert httpx.get(f"{front.base}/metadata", timeout=5).status_code == 200
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /fhir/metadata?" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 100_000 + b"\r\n\r\n", 431),
    (b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", 431),
    (b"GET /fhir/meta\x00data HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /fhir/metadata\r\n\r\n", 400),  # HTTP/0.9
    (b"GET /fhir/metadata HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"BLAH\x01 / HTTP/1.1\r\n\r\n", 400),
    (b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n", 413),
    # without chunked last the body's length is unknown: 400 (RFC 9112 6.3, MUST)
    (b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    # a coding we do not know before chunked: 501 (RFC 9112 6.1)
    (b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     501),
    (b"POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n", 400),  # request smuggling
    (b"GET /fhir/metadata HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
    (b"GET /fhir/metadata HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
])
def test_errors_of_the_http_layer_are_operation_outcomes(
        front: ServerProcess, request_bytes: bytes, status: int) -> None:
    answer = raw(front.port, request_bytes)
    assert_outcome(answer, status)
    assert answer[1]["connection"] == "close"


def test_host_header_injection_is_refused_and_never_reflected(front: ServerProcess) -> None:
    evil = b'evil.example"><script>'
    assert "Host" in assert_outcome(raw(front.port, b"GET /fhir/Patient HTTP/1.1\r\nHost: " +
                                         evil + b"\r\n\r\n"), 400)
    # a well-formed but foreign Host changes nothing: links use the configured base
    bundle = httpx.get(f"{front.base}/Patient", headers={"Host": "evil.example:666"}).json()
    assert bundle["link"][0]["url"].startswith(front.base + "/Patient")


def test_keep_alive_pipelining_chunked_continue_and_http_1_0(front: ServerProcess) -> None:
    body = orjson.dumps(patient())
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    with contextlib.closing(connect(port=front.port)) as sock:
        sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        assert read_answer(sock)[0] == 200
        assert read_answer(sock)[0] == 201
        sock.sendall(b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                     b"fhir+json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_answer(sock)[0] == 201
    status, headers, _ = raw(front.port, b"GET /fhir/metadata HTTP/1.0\r\n\r\n")
    assert status == 200 and headers["connection"] == "close"


def test_second_server_on_the_same_port_refuses_to_start(front: ServerProcess) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "hygeia.cli.main", "serve", "--port", str(front.port),
         "--db", front.db_url], capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert second.stderr.strip() == (f"error: 127.0.0.1:{front.port} is already in use "
                                     "(is another hygeia serve running?)")
    assert httpx.get(f"{front.base}/metadata", timeout=5).status_code == 200


def test_wildcard_bind_needs_a_base_url(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "hygeia.cli.main", "serve", "--host", "0.0.0.0", "--port",
         str(free_port()), "--db", f"sqlite:///{tmp_path}/w.db"],
        capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert refused.stderr.startswith("error: --host 0.0.0.0 listens on every address")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_base_url_is_used_for_links_discovery_and_audiences(tmp_path: Path) -> None:
    """Behind a proxy: the server answers on 127.0.0.1, clients know it by its public name."""
    root = "https://fhir.example.org:8443"
    url = f"sqlite:///{tmp_path}/b.db"
    key = BackendKey(tmp_path)
    client = cli_json("auth", "client", "create", "--db", url, "--name", "Nightly", "--scopes",
                      "system/Patient.rs", "--jwks-file", str(key.jwks_file))["client_id"]
    server = ServerProcess(url, "--auth", "--base-url", root + "/")
    evil = {"Host": "evil.example"}
    try:
        config = httpx.get(f"{server.base}/.well-known/smart-configuration", headers=evil).json()
        assert config["token_endpoint"] == f"{root}/auth/token"
        statement = httpx.get(f"{server.base}/metadata", headers=evil).text
        assert f"{root}/auth/token" in statement and "evil" not in statement
        token = httpx.post(f"http://127.0.0.1:{server.port}/auth/token", headers=evil, data={
            "grant_type": "client_credentials", "scope": "system/Patient.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": key.assertion(client, f"{root}/auth/token")})
        assert token.status_code == 200, token.text
        access = token.json()["access_token"]
        assert jwt.decode(access, options={"verify_signature": False})["aud"] == f"{root}/fhir"
        bundle = server.client.get("Patient", headers={**evil,
                                                       "Authorization": f"Bearer {access}"})
        assert bundle.status_code == 200
        assert bundle.json()["link"][0]["url"].startswith(f"{root}/fhir/Patient")
    finally:
        server.stop()


def test_stalled_token_forms_do_not_hold_the_threads(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path}/a.db", "--auth", *TIMEOUTS)
    try:
        held = stall(server.port, STALLED, b"POST /auth/token HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100000\r\n\r\ngrant_type=")
        try:
            time.sleep(0.3)
            for url in (f"{server.base}/metadata",
                        f"http://127.0.0.1:{server.port}/.well-known/smart-configuration"):
                started = time.monotonic()
                assert httpx.get(url, timeout=5).status_code == 200
                assert time.monotonic() - started < 1.0
        finally:
            for sock in held:
                sock.close()
    finally:
        server.stop()


def test_bodies_held_in_memory_are_capped(tmp_path: Path) -> None:
    """Many clients uploading at once cannot make the process hold more than the cap."""
    server = ServerProcess(f"sqlite:///{tmp_path}/m.db", "--max-body-mb", "1",
                           "--max-buffered-mb", "1", "--body-timeout", "5")
    try:
        head = b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
        with contextlib.closing(connect(port=server.port)) as first, \
                contextlib.closing(connect(port=server.port)) as second:
            first.sendall(head + b"Content-Length: 1000000\r\n\r\n" + b" " * 900_000)
            time.sleep(0.3)  # the first body is held, waiting for its last bytes
            second.sendall(head + b"Content-Length: 500000\r\n\r\n" + b" " * 200_000)
            assert "try again" in assert_outcome(read_answer(second), 503)
        assert httpx.get(f"{server.base}/metadata", timeout=5).status_code == 200
    finally:
        server.stop()


def test_limit_flags_must_be_positive(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "hygeia.cli.main", "serve", "--header-timeout", "0", "--port",
         str(free_port()), "--db", f"sqlite:///{tmp_path}/z.db"],
        capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert refused.stderr.strip() == "error: --header-timeout must be more than 0 (got 0.0)"


def test_a_client_that_stops_reading_a_download_is_cut_off(tmp_path: Path) -> None:
    """A streamed answer (an export file) waits for the client, but not beyond the body
    timeout: the thread is freed and the server keeps answering others."""
    from tests.api.test_bulk_http import KICK_OFF, poll
    from tests.api.test_limits_and_crash import amplified_bundle

    server = ServerProcess(f"sqlite:///{tmp_path}/d.db", "--files", str(tmp_path / "files"),
                           "--max-body-mb", "256", "--body-timeout", "2", "--threads", "2")
    try:
        body = orjson.dumps(amplified_bundle(20)[0])
        for _ in range(3):  # 8 MB of Observations: more than the kernel buffers hold
            assert server.client.post("", content=body, headers=FHIR_JSON).status_code == 200
        started = server.client.get("$export", params={"_type": "Observation"}, headers=KICK_OFF)
        manifest = poll(server.client, started.headers["Content-Location"]).json()
        url = manifest["output"][0]["url"]
        size = len(server.client.get(url).content)
        assert size > 6 * 1024 * 1024, "the file must be larger than the socket buffers"
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)  # a download that is never cut off fails here instead of hanging
        sock.connect(("127.0.0.1", server.port))
        with contextlib.closing(sock):
            sock.sendall(f"GET {urlsplit(url).path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(4)  # the client reads nothing for twice the body timeout
            assert httpx.get(f"{server.base}/metadata", timeout=5).status_code == 200
            received = 0
            with contextlib.suppress(ConnectionError):
                while chunk := sock.recv(65536):
                    received += len(chunk)
        assert received < size, "the stalled download should have been cut off"
    finally:
        server.stop()
