"""The websocket channel: a :class:`~hygeia.server.extensions.Listener` on ``--ws-port``.

WSGI cannot upgrade a connection, so the channel has a port of its own,
served by the ``websockets`` library (a thread per connection).  As the
Subscriptions Backport IG describes it, a client gets a token from
``Subscription/{id}/$get-ws-binding-token``, connects to its ``websocket-url``
and sends ``bind-with-token <token>``; the server answers with a handshake
notification, then sends each event notification recorded from then on (a
client recovers earlier ones with ``$events``) and a heartbeat every heartbeat
period.  A connection that binds nothing within ``BIND_SECONDS``, sends an
unknown token, or whose subscription is turned off, is closed (code 1008).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

import hygeia.server.subscriptions.tables as tables
from hygeia.fhir.datetime import now_us
from hygeia.server.subscriptions.delivery import content_reader, current_spec, fhir_base
from hygeia.server.subscriptions.notify import notification_bundle

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

log = logging.getLogger("hygeia.subscriptions")
BIND_SECONDS = 30.0
MAX_MESSAGE_BYTES = 4096  # what a client sends is a bind command
MAX_CONNECTIONS = 1000
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


class WebsocketChannel:
    """The websocket listener (started by ``hygeia serve`` in its first process)."""

    name = "subscriptions-websocket"

    def __init__(self, host: Host) -> None:
        self.host = host
        self.settings = host.settings.subscriptions
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._connections = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        port = self.settings.ws_port
        assert port is not None
        self._server = serve(self._handle, self.settings.ws_host, port,
                             max_size=MAX_MESSAGE_BYTES)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="hygeia-websocket", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(10)

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self._connections += 1
            crowded = self._connections > MAX_CONNECTIONS
        try:
            if crowded:
                connection.close(TRY_AGAIN_LATER, "too many websocket connections")
                return
            _Binding(self.host, connection).run()
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections -= 1


class _Binding:
    """One connection: the subscriptions it bound and the last event sent for each."""

    def __init__(self, host: Host, connection: ServerConnection) -> None:
        self.host = host
        self.connection = connection
        self.poll = host.settings.subscriptions.poll_seconds
        self.sent: dict[str, int] = {}  # subscription id -> last event number sent
        self.beat: dict[str, float] = {}  # subscription id -> when the last message left
        self.period: dict[str, int | None] = {}  # subscription id -> heartbeat seconds

    def run(self) -> None:
        opened = time.monotonic()
        while True:
            try:
                message = self.connection.recv(timeout=self.poll)
            except TimeoutError:
                message = None
            if message is not None and not self._bind(str(message)):
                return
            if not self.sent and time.monotonic() - opened > BIND_SECONDS:
                self.connection.close(POLICY_VIOLATION, "no bind-with-token received")
                return
            for id in list(self.sent):
                if not self._push(id):
                    return

    def _bind(self, message: str) -> bool:
        command, _, token = message.strip().partition(" ")
        id = tables.redeem_token(self.host.repository, token.strip(), now_us()) \
            if command == "bind-with-token" and token.strip() else None
        spec = None if id is None else current_spec(self.host, id)
        state = None if id is None else tables.read_state(self.host.repository, id)
        if spec is None or state is None or spec.channel != "websocket":
            self.connection.close(POLICY_VIOLATION, "unknown or expired binding token")
            return False
        self.sent[spec.id] = state.events
        self.period[spec.id] = spec.heartbeat_seconds
        self._send(notification_bundle(spec, fhir_base(self.host), state.status, "handshake",
                                       state.events), spec.id)
        return True

    def _push(self, id: str) -> bool:
        """Send what is new for ``id``: one query when nothing is (the state row)."""
        state = tables.read_state(self.host.repository, id)
        if state is None or state.status not in tables.LIVE:
            self.connection.close(POLICY_VIOLATION, f"Subscription/{id} is no longer active")
            return False
        period = self.period.get(id)
        beat_due = bool(period) and time.monotonic() - self.beat[id] >= (period or 0)
        if state.events <= self.sent[id] and not beat_due:
            return True
        spec = current_spec(self.host, id)
        if spec is None:
            self.connection.close(POLICY_VIOLATION, f"Subscription/{id} is no longer active")
            return False
        self.period[id] = spec.heartbeat_seconds
        pending = tables.notifications(self.host.repository, id, self.sent[id], None,
                                       spec.max_count)
        if pending:
            self._send(notification_bundle(spec, fhir_base(self.host), state.status,
                                           "event-notification", state.events, pending,
                                           content_reader(self.host)), id)
            self.sent[id] = pending[-1].number
        elif beat_due:
            self._send(notification_bundle(spec, fhir_base(self.host), state.status,
                                           "heartbeat", state.events), id)
        return True

    def _send(self, notification: dict[str, object], id: str) -> None:
        self.connection.send(orjson.dumps(notification).decode())
        self.beat[id] = time.monotonic()
