"""The guarded outbound client against a real HTTP server of the test's own on 127.0.0.1:
addresses refused unless allow-listed, size caps, deadlines, redirects, DNS rebinding."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hygeia.server import outbound
from hygeia.server.outbound import OutboundPolicy, OutboundRefused, fetch, fetch_json

LOCAL = OutboundPolicy(("127.0.0.1",), timeout_seconds=2.0, max_bytes=100_000)


class Target:
    """What the test server answers per path, and how often it was asked."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.hits[self.path] = target.hits.get(self.path, 0) + 1
                getattr(target, "answer_" + self.path.strip("/").replace("-", "_"))(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
              **headers: str) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    def answer_keys(self, handler: BaseHTTPRequestHandler) -> None:
        body = b'{"keys": []}'
        self._send(handler, 200, body, Content_Length=str(len(body)))

    def answer_big(self, handler: BaseHTTPRequestHandler) -> None:
        self._send(handler, 200, b"x" * 200_000, Content_Length="200000")

    def answer_big_unannounced(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        self._send(handler, 200, b"x" * 200_000)  # no Content-Length: read until closed

    def answer_drip(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):
            try:
                handler.wfile.write(b"x")
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)

    def answer_to_other_host(self, handler: BaseHTTPRequestHandler) -> None:
        self._send(handler, 302, Location=self.url("/keys", "localhost"), Content_Length="0")

    def answer_to_same_host(self, handler: BaseHTTPRequestHandler) -> None:
        self._send(handler, 302, Location="/keys", Content_Length="0")

    def answer_missing(self, handler: BaseHTTPRequestHandler) -> None:
        self._send(handler, 404, Content_Length="0")


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    made = Target()
    yield made
    made.server.shutdown()
    made.server.server_close()


def test_loopback_is_refused_unless_allow_listed(target: Target) -> None:
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1.*--outbound-allow"):
        fetch(target.url("/keys"), OutboundPolicy())
    assert "/keys" not in target.hits  # refused before connecting
    assert fetch_json(target.url("/keys"), LOCAL) == {"keys": []}
    assert fetch_json(target.url("/keys"), OutboundPolicy(("127.0.0.0/8",))) == {"keys": []}


@pytest.mark.parametrize("host", [
    "169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0",
    "[::1]", "[fe80::1]", "[::ffff:127.0.0.1]", "[fc00::1]", "224.0.0.1", "localhost",
    "240.0.0.1"])
def test_non_public_addresses_are_refused(host: str) -> None:
    with pytest.raises(OutboundRefused, match="not fetch from"):
        fetch(f"http://{host}:9/keys", OutboundPolicy(timeout_seconds=1.0))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "gopher://x/",
                                 "http:///nohost", "http://127.0.0.1:99999/"])
def test_only_http_and_https_urls(url: str) -> None:
    with pytest.raises(OutboundRefused):
        fetch(url, LOCAL)


def test_answers_over_the_size_cap_are_cut_off(target: Target) -> None:
    with pytest.raises(OutboundRefused, match="over the limit"):
        fetch(target.url("/big"), LOCAL)
    with pytest.raises(OutboundRefused, match="more than 100000 bytes"):
        fetch(target.url("/big-unannounced"), LOCAL)


def test_a_dripping_server_is_cut_off_at_the_deadline(target: Target) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundRefused):
        fetch(target.url("/drip"), OutboundPolicy(("127.0.0.1",), timeout_seconds=1.0))
    assert time.monotonic() - started < 2.0


def test_redirects_stay_on_the_same_host(target: Target) -> None:
    with pytest.raises(OutboundRefused, match="another host"):
        fetch(target.url("/to-other-host"), OutboundPolicy(("127.0.0.1", "localhost")))
    assert fetch_json(target.url("/to-same-host"), LOCAL) == {"keys": []}
    with pytest.raises(OutboundRefused, match="HTTP 404"):
        fetch(target.url("/missing"), LOCAL)


def _resolver(answers: list[str], literals_too: bool) -> tuple[Any, list[str]]:
    """A getaddrinfo whose answers for a name change from call to call (DNS rebinding);
    an IP literal resolves to itself unless ``literals_too``."""
    remaining, lookups = iter(answers), []

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        literal = host.replace(".", "").isdigit()
        address = host if literal and not literals_too else next(remaining)
        lookups.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve, lookups


def test_a_name_is_resolved_once_and_the_checked_address_is_connected_to(
        target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first answer is public, a second one would be loopback: the connection goes
    to the checked public address (unreachable here), never to loopback."""
    resolve, lookups = _resolver(["198.51.100.7", "127.0.0.1"], literals_too=False)
    before = target.hits.get("/keys", 0)
    monkeypatch.setattr(outbound.socket, "getaddrinfo", resolve)
    monkeypatch.setattr(outbound, "public", lambda address: str(address) == "198.51.100.7")
    with pytest.raises(OutboundRefused):
        fetch(f"http://rebind.example:{target.port}/keys", OutboundPolicy(timeout_seconds=0.5))
    assert lookups == ["198.51.100.7", "198.51.100.7"]  # the name once, then the literal
    assert target.hits.get("/keys", 0) == before


def test_the_address_actually_connected_to_is_checked(
        target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the connection still land on loopback, the peer check refuses it."""
    resolve, _ = _resolver(["198.51.100.7", "127.0.0.1"], literals_too=True)
    monkeypatch.setattr(outbound.socket, "getaddrinfo", resolve)
    monkeypatch.setattr(outbound, "public", lambda address: str(address) == "198.51.100.7")
    before = target.hits.get("/keys", 0)
    with pytest.raises(OutboundRefused, match=r"connected to 127\.0\.0\.1"):
        fetch(f"http://rebind.example:{target.port}/keys", OutboundPolicy(timeout_seconds=1))
    assert target.hits.get("/keys", 0) == before


def test_public_addresses_pass_the_check() -> None:
    assert outbound.public(ipaddress.ip_address("93.184.216.34"))
    assert not outbound.public(ipaddress.ip_address("::ffff:10.0.0.1"))


class Hook:
    """An HTTP/1.1 endpoint that keeps connections open, and counts them and the POSTs
    it answered; it can close every open connection from its side."""

    def __init__(self) -> None:
        self.connections = 0
        self.posts = 0
        self.open: list[socket.socket] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                hook.connections += 1
                hook.open.append(self.connection)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.posts += 1
                body = b"x" * 200_000 if self.path == "/big" else b"ok"
                self.send_response(404 if self.path == "/gone" else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hang_up(self) -> None:
        for sock in self.open:
            sock.shutdown(socket.SHUT_RDWR)
        self.open.clear()
        time.sleep(0.1)  # the handler threads see it and end

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    endpoint = Hook()
    yield endpoint
    endpoint.close()


def test_posts_to_one_endpoint_share_one_connection(hook: Hook) -> None:
    kept = outbound.KeptConnections()
    for n in range(20):
        assert kept.post(hook.url, b'{"n": %d}' % n, {}, LOCAL).body == b"ok"
    assert (hook.posts, hook.connections) == (20, 1)
    kept.close()
    kept.post(hook.url, b"{}", {}, LOCAL)  # closed: a new one
    assert (hook.posts, hook.connections) == (21, 2)
    kept.close()


def test_a_kept_connection_is_used_only_while_the_policy_allows_the_endpoint(
        hook: Hook) -> None:
    kept = outbound.KeptConnections()
    kept.post(hook.url, b"{}", {}, LOCAL)
    with pytest.raises(OutboundRefused, match="loopback"):
        kept.post(hook.url, b"{}", {}, OutboundPolicy())  # the default: no loopback
    with pytest.raises(OutboundRefused, match="not an http"):
        kept.post(hook.url.replace("http:", "ftp:"), b"{}", {}, LOCAL)
    assert hook.posts == 1
    kept.post(hook.url, b"{}", {}, LOCAL)
    assert (hook.posts, hook.connections) == (2, 1)
    kept.close()


def test_a_connection_the_endpoint_closed_is_replaced_without_losing_the_post(
        hook: Hook) -> None:
    kept = outbound.KeptConnections()
    kept.post(hook.url, b"{}", {}, LOCAL)
    hook.hang_up()
    kept.post(hook.url, b"{}", {}, LOCAL)
    assert (hook.posts, hook.connections) == (2, 2)
    kept.close()


def test_kept_posts_still_refuse_failures_and_oversized_answers(hook: Hook) -> None:
    kept = outbound.KeptConnections()
    base = hook.url.removesuffix("/hook")
    with pytest.raises(OutboundRefused, match="over the limit"):
        kept.post(f"{base}/big", b"{}", {}, LOCAL)
    with pytest.raises(OutboundRefused, match="HTTP 404"):
        kept.post(f"{base}/gone", b"{}", {}, LOCAL)
    kept.post(hook.url, b"{}", {}, LOCAL)
    assert hook.posts == 3
    kept.close()


def test_kept_posts_do_not_wait_for_delayed_acknowledgements(hook: Hook) -> None:
    """The hook writes its headers and body apart (Nagle's algorithm on, as Python's
    http.server): without TCP_NODELAY and quick acknowledgements each POST on a kept
    connection stalled 40 ms or more (measured 88 ms), so 20 took a second or two."""
    kept = outbound.KeptConnections()
    kept.post(hook.url, b"{}", {}, LOCAL)
    started = time.monotonic()
    for _ in range(20):
        kept.post(hook.url, b'{"entry": []}', {}, LOCAL)
    assert time.monotonic() - started < 0.6
    assert hook.connections == 1
    kept.close()
