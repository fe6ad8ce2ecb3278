"""A real rest-hook endpoint for tests: an HTTP/1.1 server on a free port that records
every notification it receives (and can be told to fail), and counts the connections
it was sent them on (kept alive between notifications)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class Receiver:
    """Records POSTed notification Bundles; answers ``status`` (200 unless told)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.attempts = 0
        self.connections = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps the connection open between requests

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner._lock:
                    owner.attempts += 1
                    status = owner.status
                    if status < 300:
                        owner.received.append(orjson.loads(body))
                        owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # a kept connection's thread never blocks close
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.received if status_of(b)["type"] == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 15.0
                 ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of_kind(kind)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} {kind} notification(s) expected, got "
                             f"{len(self.of_kind(kind))}: {self.received}")


def status_of(notification: dict[str, Any]) -> dict[str, Any]:
    """The SubscriptionStatus parameters of a notification, by name (single values)."""
    parameters = notification["entry"][0]["resource"]["parameter"]
    found: dict[str, Any] = {}
    for parameter in parameters:
        value = next((v for k, v in parameter.items() if k.startswith("value")),
                     parameter.get("part"))
        if parameter["name"] == "notification-event":
            found.setdefault("events", []).append(
                {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                 for p in parameter["part"]})
        else:
            found[parameter["name"]] = value
    return found
