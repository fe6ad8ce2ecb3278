"""A small pillar for tests: serve flags, an operation, listeners and a command.

It is found the way every pillar is, through the ``hygeia.pillars`` entry-point
group (tests/cli/test_pillars.py installs its metadata in a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest
from hygeia.server import FhirResponse
from hygeia.server.extensions import (
    CliCommand,
    ListenAddress,
    MountRequest,
    MountResponse,
    Operation,
    OperationCall,
    PillarHost,
)
from hygeia.server.rest import write


def hello(call: OperationCall) -> FhirResponse:
    return FhirResponse(200, resource={"resourceType": "Parameters", "parameter": [
        {"name": "greeting", "valueString": "hello from the example pillar"}]})


class HelloListener:
    """Answers ``hello`` to every TCP connection on its port."""

    name = "hello"

    def __init__(self, port: int) -> None:
        self.port = port
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._socket is not None
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.sendall(self.greeting())

    def greeting(self) -> bytes:
        return b"hello\n"

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()


class PidListener(HelloListener):
    """Answers its serving process's id, in every serving process (a SharedListener on
    the socket ``hygeia serve`` bound for ``--pid-port``)."""

    name = "pid"

    def adopt(self, server: socket.socket) -> None:
        self._socket = server

    def start(self) -> None:
        assert self._socket is not None, "hygeia serve hands it its socket"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def greeting(self) -> bytes:
        return f"{os.getpid()}\n".encode()


class HelloMount:
    """``/hello/...``: says what it was asked, with a 1 KB body limit of its own."""

    name = "hello"
    prefixes = ("/hello",)
    max_body_bytes = 1024
    requires_token = False

    def handle(self, request: MountRequest) -> MountResponse:
        if request.path == "/hello/fail":
            raise BadRequest("Asked to fail.", expression="path")
        answer = {"method": request.method, "path": request.path, "bytes": len(request.body),
                  "root": request.root, "query": dict(request.query)}
        return MountResponse(200, orjson.dumps(answer))


class HelloCommand:
    name = "hello"
    help = "say hello (an example pillar's command)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--who", default="world", help="whom to greet (default world)")

    def run(self, args: argparse.Namespace) -> int:
        print(f"hello {args.who}")
        return 0


class ExamplePillar:
    name = "example"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--hello-port", type=int, default=None, metavar="N",
                           help="answer hello on this TCP port (default: off)")
        group.add_argument("--pid-port", type=int, default=None, metavar="N",
                           help="answer the serving process's id on this TCP port, in "
                                "every serving process (default: off)")

    def listen_addresses(self, options: Mapping[str, Any], host: str) -> list[ListenAddress]:
        port = options.get("pid_port")
        return [] if port is None else [ListenAddress("pid", host, int(port))]

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        host.add_operation(Operation("hello", hello, "urn:example:OperationDefinition:hello",
                                     system=True, methods=("GET",)))
        host.add_mount(HelloMount())
        if options.get("hello_port"):
            host.add_listener(HelloListener(int(options["hello_port"])))
        if options.get("pid_port") is not None:
            host.add_listener(PidListener(int(options["pid_port"])))

    def commands(self) -> Sequence[CliCommand]:
        return [HelloCommand()]

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        with host.transaction() as session:
            if session.current("Basic", "hello-demo") is None:
                write.update(session, "Basic", "hello-demo", {
                    "resourceType": "Basic", "id": "hello-demo", "code": {"text": "hello demo"}})
        return ["Example pillar:", f"  curl -s '{fhir_base}/$hello'",
                f"  curl -s '{fhir_base}/Basic/hello-demo'"]


PILLAR = ExamplePillar()
