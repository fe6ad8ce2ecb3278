"""Keys of clients registered by JWKS URL: cached for the answer's max-age, fetched again
for an unknown kid but never more often than the refetch interval, private keys refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from hygeia.server.auth import client_keys
from hygeia.server.auth.client_keys import ClientKeys, ClientKeysUnavailable
from hygeia.server.outbound import OutboundPolicy


class KeyHost:
    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": [{"kty": "EC", "kid": "one"}]}
        self.cache_control = "max-age=1"
        self.fetches = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.fetches += 1
                body = orjson.dumps(host.document)
                self.send_response(200)
                self.send_header("Cache-Control", host.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyHost]:
    monkeypatch.setattr(client_keys, "REFETCH_SECONDS", 0.3)
    made = KeyHost()
    yield made
    made.server.shutdown()
    made.server.server_close()


def test_keys_are_cached_and_an_unknown_kid_refetches_rate_limited(host: KeyHost) -> None:
    keys = ClientKeys(OutboundPolicy(("127.0.0.1",)))
    assert [k["kid"] for k in keys.keys(host.url, "one")] == ["one"]
    assert keys.keys(host.url, "one") and host.fetches == 1
    host.document = {"keys": [{"kty": "EC", "kid": "one"}, {"kty": "EC", "kid": "two"}]}
    for _ in range(20):  # a burst of made-up kids: no fetch inside the interval
        keys.keys(host.url, "made-up")
    assert host.fetches == 1
    time.sleep(0.35)
    assert [k["kid"] for k in keys.keys(host.url, "two")] == ["one", "two"]
    assert host.fetches == 2
    keys.keys(host.url, "two")
    assert host.fetches == 2  # known kid, within max-age
    time.sleep(1.05)
    keys.keys(host.url, "two")
    assert host.fetches == 3  # max-age=1 passed


def test_a_jwks_with_a_private_key_or_not_a_jwks_is_refused(host: KeyHost) -> None:
    host.document = {"keys": [{"kty": "EC", "kid": "one", "d": "secret"}]}
    with pytest.raises(ClientKeysUnavailable, match="private key"):
        ClientKeys(OutboundPolicy(("127.0.0.1",))).keys(host.url, "one")
    host.document = {"nothing": 1}
    with pytest.raises(ClientKeysUnavailable, match="not a JWK Set"):
        ClientKeys(OutboundPolicy(("127.0.0.1",))).keys(host.url, "one")


def test_a_loopback_jwks_url_is_refused_without_the_allow_list(host: KeyHost) -> None:
    with pytest.raises(ClientKeysUnavailable, match="--outbound-allow"):
        ClientKeys(OutboundPolicy()).keys(host.url, "one")
    assert host.fetches == 0
