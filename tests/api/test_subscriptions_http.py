"""Subscriptions through a real ``hygeia serve``: a real rest-hook endpoint, a real
websocket client, refusals, $status/$events, retries then error, and kill -9 between
commit and delivery, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from hygeia.server.subscriptions.spec import (
    BACKPORT_PROFILE,
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    TOPIC_CANONICAL,
)
from tests.api.smart import BackendKey, backend_token, bearer, cli_json
from tests.conftest import BACKENDS, ServerProcess, backend_server, free_port
from tests.helpers import unique
from tests.server.subscriptions.receiver import Receiver, status_of

LAB_SCOPE = "system/Observation.rs?category=laboratory"
QUICK = ("--outbound-allow", "127.0.0.1", "--subscription-poll-seconds", "0.1",
         "--subscription-retry-seconds", "0.05", "--subscription-max-failures", "3")


@pytest.fixture(scope="module", params=BACKENDS)
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    with backend_server(request, tmp_path_factory, "subs", "--ws-port", str(free_port()),
                        *QUICK) as process:
        yield process


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def observation(code: str, value: float = 1.0) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "/min"}}


def subscription(channel: dict[str, Any], *filters: str, content: str = "full-resource",
                 heartbeat: int | None = None) -> dict[str, Any]:
    extensions = [] if heartbeat is None else [{"url": HEARTBEAT_PERIOD,
                                                "valueUnsignedInt": heartbeat}]
    criteria = {"_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": f}
                                             for f in filters]}} if filters else {}
    return {"resourceType": "Subscription", "status": "requested", "reason": "http test",
            "meta": {"profile": [BACKPORT_PROFILE]},
            "criteria": "urn:hygeia:topic:Observation", **criteria,
            "channel": {**channel, "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": PAYLOAD_CONTENT,
                                                    "valueCode": content}]},
                        **({"extension": extensions} if extensions else {})}}


def created(client: httpx.Client, resource: dict[str, Any]) -> str:
    response = client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_status(client: httpx.Client, id: str, status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"Subscription/{id}").json()["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"Subscription/{id} never became {status}")


def test_rest_hook_notifications_end_to_end(hub: ServerProcess, receiver: Receiver) -> None:
    client, code = hub.client, unique()[:12]
    id = created(client, subscription({"type": "rest-hook", "endpoint": receiver.url},
                                      f"Observation?code={code}"))
    receiver.wait_for("handshake")
    wait_status(client, id, "active")
    first = created(client, observation(code, 70))
    created(client, observation("unrelated"))
    second = created(client, observation(code, 80))
    sent = receiver.wait_for("event-notification", 1)
    deadline = time.monotonic() + 15
    while sum(len(status_of(n)["events"]) for n in sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        sent = receiver.of_kind("event-notification")
    events = [e for n in sent for e in status_of(n)["events"]]
    assert [e["event-number"] for e in events] == ["1", "2"]
    resources = [e["resource"] for n in sent for e in n["entry"][1:]]
    assert [r["id"] for r in resources] == [first, second]
    assert resources[1]["valueQuantity"]["value"] == 80
    assert events[0]["focus"]["reference"] == f"{hub.base}/Observation/{first}"
    assert receiver.headers[0]["content-type"] == "application/fhir+json"

    status = client.get(f"Subscription/{id}/$status").json()
    assert status["type"] == "searchset"
    assert status_of(status)["events-since-subscription-start"] == "2"
    replay = client.get(f"Subscription/{id}/$events", params={"eventsSinceNumber": "2"}).json()
    assert [e["event-number"] for e in status_of(replay)["events"]] == ["2"]
    assert replay["entry"][1]["resource"]["id"] == second


def test_websocket_channel_binds_with_a_token(hub: ServerProcess) -> None:
    client, code = hub.client, unique()[:12]
    id = created(client, subscription({"type": "websocket"}, f"Observation?code={code}",
                                      "Observation?interaction=create", content="id-only",
                                      heartbeat=1))
    wait_status(client, id, "active")
    binding = client.get(f"Subscription/{id}/$get-ws-binding-token").json()
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
              for p in binding["parameter"]}
    assert values["subscription"] == f"Subscription/{id}"
    assert values["websocket-url"].startswith("ws://127.0.0.1:")
    with connect(values["websocket-url"], open_timeout=10) as channel:
        channel.send(f"bind-with-token {values['token']}")
        handshake = orjson.loads(channel.recv(timeout=10))
        assert status_of(handshake)["type"] == "handshake"
        observation_id = created(client, observation(code))
        kinds: list[str] = []
        while "event-notification" not in kinds:
            message = orjson.loads(channel.recv(timeout=10))
            kinds.append(status_of(message)["type"])
        assert status_of(message)["events"][0]["event-number"] == "1"
        assert message["entry"][1]["fullUrl"].endswith(f"Observation/{observation_id}")
        assert "resource" not in message["entry"][1]
        beat = orjson.loads(channel.recv(timeout=5))  # heartbeat period 1 s
        assert status_of(beat)["type"] == "heartbeat"
    # a token is used once
    with connect(values["websocket-url"], open_timeout=10) as channel:
        channel.send(f"bind-with-token {values['token']}")
        with pytest.raises(ConnectionClosed) as closed:
            channel.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_refused_subscriptions_answer_422(hub: ServerProcess) -> None:
    for change, expression in [
        ({"channel": {"type": "email", "endpoint": "mailto:a@example.org"}},
         "Subscription.channel.type"),
        ({"criteria": "urn:hygeia:topic:NotAType"}, "Subscription.criteria"),
        ({"channel": {"type": "rest-hook", "endpoint": "file:///etc/passwd"}},
         "Subscription.channel.endpoint")]:
        resource = {**subscription({"type": "rest-hook", "endpoint": "https://example.org/h"}),
                    **change}
        response = hub.client.post("Subscription", json=resource)
        assert response.status_code == 422, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == [expression]


def test_topics_are_advertised(hub: ServerProcess) -> None:
    statement = hub.client.get("metadata").json()
    entry = next(e for e in statement["rest"][0]["resource"] if e["type"] == "Subscription")
    topics = {e["valueCanonical"] for e in entry["extension"] if e["url"] == TOPIC_CANONICAL}
    assert "urn:hygeia:topic:Observation" in topics


def test_failing_endpoint_turns_to_error(hub: ServerProcess, receiver: Receiver) -> None:
    receiver.status = 503
    id = created(hub.client, subscription({"type": "rest-hook", "endpoint": receiver.url}))
    wait_status(hub.client, id, "error")
    assert receiver.attempts == 3
    status = status_of(hub.client.get(f"Subscription/{id}/$status").json())
    assert status["status"] == "error" and "503" in status["error"]["text"]


def test_kill_9_between_commit_and_delivery_loses_nothing(database_url: str,
                                                          receiver: Receiver) -> None:
    extra = (*QUICK[:-1], "50")  # many failures allowed: the endpoint is down a while
    server = ServerProcess(database_url, *extra)
    try:
        code = unique()[:12]
        id = created(server.client, subscription(
            {"type": "rest-hook", "endpoint": receiver.url}, f"Observation?code={code}",
            content="id-only"))
        receiver.wait_for("handshake")
        wait_status(server.client, id, "active")
        receiver.status = 503  # committed, recorded, not delivered
        first = created(server.client, observation(code))
        deadline = time.monotonic() + 15
        while receiver.attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = created(server.client, observation(code))  # killed right after commit
        server.kill()
    finally:
        server.stop()
    receiver.status = 200
    restarted = ServerProcess(database_url, *extra)
    try:
        deadline = time.monotonic() + 20
        events: list[dict[str, Any]] = []
        while len(events) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            events = [e for n in receiver.of_kind("event-notification")
                      for e in status_of(n)["events"]]
        assert [e["event-number"] for e in events][:2] == ["1", "2"]
        focus = [e["focus"]["reference"].rsplit("/", 1)[1] for e in events]
        assert focus[:2] == [first, second]
    finally:
        restarted.stop()


def test_a_taken_websocket_port_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hygeia.cli.main", "serve", "--port", str(free_port()),
             "--db", f"sqlite:///{tmp_path}/ws.db", "--ws-port", str(port)],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: 127.0.0.1:{port} is already in use (is another hygeia serve running?)"]


def test_notifications_respect_the_creators_token(database_url: str, tmp_path: Path,
                                                  receiver: Receiver) -> None:
    """With --auth, a client that may read only laboratory Observations never hears of
    another one, through the real token endpoint and HTTP edge."""
    key = BackendKey(tmp_path)
    clients = {name: cli_json("auth", "client", "create", "--db", database_url, "--name",
                              name, "--scopes", scopes, "--jwks-file",
                              str(key.jwks_file))["client_id"]
               for name, scopes in (("admin", "system/*.cruds"),
                                    ("labs", f"system/Subscription.cruds {LAB_SCOPE}"))}
    server = ServerProcess(database_url, "--auth", "--secret-key-file",
                           str(tmp_path / "secret.key"), *QUICK)
    try:
        admin = bearer(backend_token(server.base, clients["admin"], key,
                                     "system/*.cruds").json()["access_token"])
        labs = bearer(backend_token(server.base, clients["labs"], key,
                                    f"system/Subscription.cruds {LAB_SCOPE}"
                                    ).json()["access_token"])
        code = unique()[:12]
        made = server.client.post("Subscription", headers=labs, json=subscription(
            {"type": "rest-hook", "endpoint": receiver.url}, f"Observation?code={code}"))
        assert made.status_code == 201, made.text
        id = made.json()["id"]
        receiver.wait_for("handshake")

        def categorised(category: str) -> str:
            response = server.client.post("Observation", headers=admin, json={
                **observation(code), "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": category}]}]})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        vital, laboratory = categorised("vital-signs"), categorised("laboratory")
        sent = receiver.wait_for("event-notification")
        assert [e["resource"]["id"] for e in sent[0]["entry"][1:]] == [laboratory]
        time.sleep(0.5)  # time enough for a wrong second notification to arrive
        assert vital not in str(receiver.received)
        status = server.client.get(f"Subscription/{id}/$status", headers=labs).json()
        assert status_of(status)["events-since-subscription-start"] == "1"
    finally:
        server.stop()


def test_several_serving_processes_notify_each_event_once_in_order(
        database_url: str, receiver: Receiver) -> None:
    """With --workers 2 every process runs delivery; the lease keeps one subscription's
    notifications in one process at a time, so they arrive in order."""
    server = ServerProcess(database_url, "--workers", "2", *QUICK)
    try:
        code = unique()[:12]
        created(server.client, subscription({"type": "rest-hook", "endpoint": receiver.url},
                                             f"Observation?code={code}", content="id-only"))
        receiver.wait_for("handshake")
        ids = [created(server.client, observation(code, n)) for n in range(12)]
        deadline = time.monotonic() + 20
        events: list[dict[str, Any]] = []
        while len(events) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
            events = [e for n in receiver.of_kind("event-notification")
                      for e in status_of(n)["events"]]
        assert [int(e["event-number"]) for e in events] == list(range(1, len(ids) + 1))
        assert [e["focus"]["reference"].rsplit("/", 1)[1] for e in events] == ids
    finally:
        server.stop()
