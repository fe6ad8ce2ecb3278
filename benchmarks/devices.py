"""Device ingestion: IHE PCD-01 over MLLP and readings over MQTT into a real ``hygeia
serve``, each beside the same run's ``hygeia load`` rate for as many Observations as the
baseline, and the commit-to-delivery latency of a rest-hook subscription.

    python -m benchmarks.devices --backends sqlite,postgresql --senders 8 --messages 300

``--parts`` chooses among ``mllp``, ``mqtt`` and ``subscriptions`` (default: all three).

MLLP:

Each of ``--senders`` connections (python-hl7's MLLP client, one thread each) sends
``--messages`` ORU^R01 messages of 6 OBX rows (heart rate, SpO2, pulse rate,
respiratory rate, temperature, weight) for a patient of its own, and waits for each
acknowledgement (sent by the server after commit) before the next message, as a
monitor gateway does. Reported: Observations stored per second (wall time from the
first message to the last acknowledgement) and the acknowledgement latency p50/p99.

MQTT: ``--publishers`` paho-mqtt clients (one gateway device each) publish
``--readings`` Observations each, one per message with QoS 1, to the broker at
``--mqtt-url`` (Mosquitto), under a topic prefix of this run's own; the server
stores them and acknowledges each (PUBACK) after commit. Each publisher keeps
``--window`` publishes in flight (default 20, paho's ``max_inflight_messages``, as a
gateway using paho does; ``--window 1`` waits for each PUBACK before the next), and
all together at most :data:`MQTT_BACKLOG` readings published but not yet stored (the
broker's queue for the server's session is bounded). Reported: Observations stored
per second, from the first publish until ``Observation?_summary=count`` (polled)
shows them all: only stored Observations count.

The baseline is ``hygeia load`` of an NDJSON file holding as many Observations of
the same shape, into a fresh database on the same backend, in the same run.

Beside each rate, the CPU it took per Observation: the server's process tree (from
/proc, :func:`~benchmarks.common.cpu_seconds`) and the loader's (its exit usage). On a
shared machine rates swing with the other load; CPU per Observation much less, so
compare those. ``--serve=--no-news2`` leaves out the clinical pillar's NEWS2 scoring,
which scores every vital sign as it is stored (several times the CPU of storing it).

``--compare REVISION`` runs the MLLP and MQTT parts first against another revision's ``src``
(``git archive``), so a change is measured beside its parent in the same minute.

``--profile DIR`` samples this checkout's MLLP server with py-spy (the threads holding the
GIL: where its CPU goes) into ``DIR/mllp-BACKEND.txt``, one ``frame;frame;... count`` a line.

Scratch PostgreSQL databases are named ``{--db-prefix}_mllp`` and so on, so runs by
several people on one server do not drop each other's.

Subscriptions: :func:`benchmarks.subscriptions.measure` (see that module), at
``--subscription-rate`` Observations per second for ``--subscription-seconds``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hl7.client
import httpx
import orjson
import paho.mqtt.client as mqtt

from benchmarks import subscriptions
from benchmarks.common import (
    DEFAULT_PG,
    Server,
    cpu_seconds,
    drop_postgres_db,
    free_port,
    fresh_postgres_db,
    source_at,
    start_py_spy,
    stop_py_spy,
)

READINGS = (  # MDC code, name, value, MDC unit, containment
    ("147842", "MDC_ECG_HEART_RATE", "72", "264864^MDC_DIM_BEAT_PER_MIN", "1.1.1.1"),
    ("150456", "MDC_PULS_OXIM_SAT_O2", "97", "262688^MDC_DIM_PERCENT", "1.2.1.1"),
    ("149530", "MDC_PULS_OXIM_PULS_RATE", "71", "264864^MDC_DIM_BEAT_PER_MIN", "1.2.1.2"),
    ("151562", "MDC_RESP_RATE", "16", "264928^MDC_DIM_RESP_PER_MIN", "1.3.1.1"),
    ("150364", "MDC_TEMP_BODY", "37.1", "268192^MDC_DIM_DEGC", "1.5.1.1"),
    ("188736", "MDC_MASS_BODY_ACTUAL", "71.5", "263875^MDC_DIM_KILO_G", "1.6.1.1"),
)
START = datetime(2026, 1, 1, tzinfo=UTC)


def pcd01(sender: int, number: int) -> str:
    """One ORU^R01 of 6 OBX rows; each message a second later than the one before."""
    at = (START + timedelta(seconds=number)).strftime("%Y%m%d%H%M%S+0000")
    eui = f"{sender:08X}ABCDEF00"
    segments = [
        f"MSH|^~\\&|BENCH_MONITOR^{eui}^EUI-64|WARD|HYGEIA|HOSP|{at}||ORU^R01^ORU_R01|"
        f"B{sender}-{number}|P|2.6|||NE|AL|||||IHE_PCD_001^IHE PCD^"
        "1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        f"PID|||BENCH-{sender}^^^HOSP^MR||Bench^Patient{sender}",
        f"OBR|1||F{sender}-{number}|182777000^monitoring of patient^SCT|||{at}",
    ]
    for row, (code, name, value, unit, place) in enumerate(READINGS, start=1):
        segments.append(f"OBX|{row}|NM|{code}^{name}^MDC|{place}|{value}|{unit}^MDC|||||R|||"
                        f"{at}||||{eui}^EUI-64")
    return "\r".join(segments) + "\r"


def run_senders(port: int, senders: int, messages: int) -> tuple[float, list[float]]:
    """Wall seconds for every message acknowledged, and each acknowledgement's latency."""
    latencies: list[list[float]] = [[] for _ in range(senders)]
    failures: list[str] = []

    def send(sender: int) -> None:
        with hl7.client.MLLPClient("127.0.0.1", port) as client:
            for number in range(messages):
                began = time.perf_counter()
                ack = client.send_message(pcd01(sender, number)).decode()
                latencies[sender].append(time.perf_counter() - began)
                if "MSA|AA" not in ack:
                    failures.append(ack)
                    return

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(senders)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise SystemExit(f"a message was not accepted: {failures[0]!r}")
    return elapsed, [latency for per_sender in latencies for latency in per_sender]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def load_baseline(db_url: str, observations: int) -> tuple[float, float]:
    """``hygeia load`` of as many Observations: Observations per second, and the loader's
    CPU milliseconds per Observation (its processes' user and system time)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Observation.ndjson"
        with path.open("wb") as handle:
            for number in range(observations):
                handle.write(orjson.dumps({
                    "resourceType": "Observation", "id": f"o{number}", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/p{number % 50}"},
                    "effectiveDateTime": (START + timedelta(seconds=number)).isoformat(),
                    "valueQuantity": {"value": 72, "unit": "/min",
                                      "system": "http://unitsofmeasure.org", "code": "/min"}})
                    + b"\n")
        began, cpu = time.perf_counter(), _children_cpu()
        subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--db", db_url,
                        "--quiet", str(path)], check=True, capture_output=True)
        elapsed = time.perf_counter() - began
        return observations / elapsed, (_children_cpu() - cpu) * 1000 / observations


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the loader and its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _server_cpu_ms(server: Server, since: float, observations: int) -> float:
    """The server's CPU milliseconds per Observation since ``since`` (its cpu_seconds)."""
    return (cpu_seconds(server.process.pid) - since) * 1000 / observations


def backend_cpu(admin: str, database_name: str) -> dict[int, float]:
    """The CPU seconds each PostgreSQL backend connected to ``database_name`` has used so
    far (its /proc stat; the database runs on this machine): what the server's own CPU
    leaves out. Backends that have exited are not counted."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as connection:
        pids = [row[0] for row in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database_name,))]
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def database(backend: str, admin: str, name: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder}/{name}.db"
    return fresh_postgres_db(admin, name)


def mllp_run(backend: str, admin: str, senders: int, messages: int, serve: tuple[str, ...],
             database_name: str, folder: Path, source: Path | None = None,
             profile: Path | None = None) -> tuple[float, list[float], float, str]:
    """One server (of ``source``, default this checkout) fed by the senders: wall
    seconds, acknowledgement latencies, server CPU ms per Observation, and on PostgreSQL
    its backends' CPU ms per Observation (text). With ``profile``
    (a file), py-spy samples the server's threads holding the GIL meanwhile (where its
    CPU goes; the processes it started too), as raw collapsed stacks."""
    db_url = database(backend, admin, database_name, folder)
    port = free_port()
    server = Server(db_url, "--mllp-port", str(port), *serve, source=source)
    spy = None
    try:
        if profile is not None:
            spy = start_py_spy(server.process.pid, profile, 100, "--gil")
        postgres = backend != "sqlite"
        before = backend_cpu(admin, database_name) if postgres else {}
        cpu = cpu_seconds(server.process.pid)
        elapsed, latencies = run_senders(port, senders, messages)
        cpu_ms = _server_cpu_ms(server, cpu, senders * messages * len(READINGS))
        backends = ""
        if postgres:
            after = backend_cpu(admin, database_name)
            used = sum(seconds - before.get(pid, 0) for pid, seconds in after.items())
            backends = (f"; PG backends {used * 1000 / (senders * messages * len(READINGS)):.2f}"
                        " CPU ms each")
    finally:
        stop_py_spy(spy)
        server.stop()
    if backend != "sqlite":
        drop_postgres_db(admin, database_name)
    return elapsed, latencies, cpu_ms, backends


def measure_mllp(backend: str, admin: str, senders: int, messages: int,
                 serve: tuple[str, ...] = (), prefix: str = "bench_devices",
                 compare: str = "", profile: Path | None = None) -> None:
    observations = senders * messages * len(READINGS)
    with tempfile.TemporaryDirectory() as folder:
        if compare:  # the other revision first, into a database of its own (the same
            # messages sent again would only be answered from the log), then this one
            other = source_at(compare, Path(folder))
            took, waits, other_ms, other_pg = mllp_run(
                backend, admin, senders, messages, serve, f"{prefix}_mllp_compare",
                Path(folder), other)
            print(f"{backend:<10} MLLP at {compare}: {observations / took:8,.0f} "
                  f"Observations/s, {other_ms:.2f} CPU ms each; ACK p50 "
                  f"{percentile(waits, 0.5) * 1000:6.1f} ms, p99 "
                  f"{percentile(waits, 0.99) * 1000:6.1f} ms{other_pg}", flush=True)
        elapsed, latencies, cpu_ms, backends = mllp_run(
            backend, admin, senders, messages, serve, f"{prefix}_mllp", Path(folder),
            profile=None if profile is None else profile / f"mllp-{backend}.txt")
        baseline_url = database(backend, admin, f"{prefix}_load", Path(folder))
        baseline, baseline_ms = load_baseline(baseline_url, observations)
        if backend != "sqlite":
            drop_postgres_db(admin, f"{prefix}_load")
    rate = observations / elapsed
    print(f"{backend:<10} MLLP {senders} senders x {messages} messages x {len(READINGS)} OBX: "
          f"{rate:8,.0f} Observations/s, {cpu_ms:.2f} CPU ms each; ACK p50 "
          f"{percentile(latencies, 0.5) * 1000:6.1f} ms, p99 "
          f"{percentile(latencies, 0.99) * 1000:6.1f} ms, mean "
          f"{statistics.fmean(latencies) * 1000:6.1f} ms | baseline hygeia load "
          f"{baseline:8,.0f} Observations/s, {baseline_ms:.2f} CPU ms each; ratio "
          f"{rate / baseline:.2f} (CPU {cpu_ms / baseline_ms:.2f}x){backends}", flush=True)


MQTT_BACKLOG = 800  # readings published and not yet stored, at most (Mosquitto queues 1000)


def reading(publisher: int, number: int) -> bytes:
    """One heart-rate Observation, a second after the publisher's previous one."""
    return orjson.dumps({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "147842",
                             "display": "MDC_ECG_HEART_RATE"}]},
        "effectiveDateTime": (START + timedelta(seconds=number)).isoformat(),
        "valueQuantity": {"value": 60 + (publisher + number) % 40, "unit": "/min",
                          "system": "http://unitsofmeasure.org", "code": "/min"}})


class StoredCount:
    """Polls the server's Observation count; publishers wait on it to bound the backlog."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.value = 0
        self.changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stopping.wait(0.05):
                response = client.get(f"{self.base}/Observation",
                                      params={"_summary": "count"})
                with self.changed:
                    self.value = int(response.json()["total"])
                    self.changed.notify_all()

    def wait_below(self, published: int, backlog: int) -> None:
        with self.changed:
            while published - self.value > backlog:
                self.changed.wait(1)

    def wait_for(self, total: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.value < total and time.monotonic() < deadline:
                self.changed.wait(1)
            return self.value >= total

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


MQTT_WINDOW = 20  # QoS 1 publishes in flight per publisher: paho's max_inflight_messages


def run_publishers(broker: tuple[str, int], prefix: str, count: StoredCount,
                   publishers: int, readings: int, window: int = MQTT_WINDOW) -> float:
    """Wall seconds from the first publish until every reading is stored.

    Each publisher keeps up to ``window`` QoS 1 publishes in flight (published, the
    broker's PUBACK not yet back), as a paho gateway does by default; ``window`` 1
    waits for each PUBACK before the next publish."""
    published = [0]
    lock = threading.Lock()
    failures: list[str] = []

    def publish(publisher: int) -> None:
        in_flight = threading.BoundedSemaphore(window)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"{prefix}-pub-{publisher}")
        client.max_inflight_messages_set(window)
        client.on_publish = lambda client, userdata, mid, reason, properties: \
            in_flight.release()
        client.connect(*broker)
        client.loop_start()
        try:
            topic = f"{prefix}/hygeia/gw-{publisher}/monitor/obs"
            for number in range(readings):
                if not in_flight.acquire(timeout=60):
                    failures.append("no PUBACK from the broker within 60 s")
                    return
                with lock:
                    published[0] += 1
                    total = published[0]
                count.wait_below(total, MQTT_BACKLOG)
                info = client.publish(topic, reading(publisher, number), qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    failures.append(mqtt.error_string(info.rc))
                    return
            for _ in range(window):  # the last PUBACKs, before disconnecting
                if not in_flight.acquire(timeout=60):
                    failures.append("no PUBACK from the broker within 60 s")
                    return
        finally:
            client.loop_stop()
            client.disconnect()

    threads = [threading.Thread(target=publish, args=(number,))
               for number in range(publishers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a reading could not be published: {failures[0]}")
    if not count.wait_for(publishers * readings, 300):
        raise SystemExit(f"only {count.value} of {publishers * readings} readings were stored")
    return time.perf_counter() - began


def mqtt_run(backend: str, admin: str, broker_url: str, publishers: int, readings: int,
             window: int, serve: tuple[str, ...], database_name: str, folder: Path,
             source: Path | None = None) -> tuple[float, float]:
    """One server (of ``source``, default this checkout) fed by the publishers under a
    topic prefix of its own: wall seconds, server CPU ms per Observation."""
    host, _, port = broker_url.removeprefix("mqtt://").partition(":")
    topics = f"bench-{uuid.uuid4().hex[:12]}"
    db_url = database(backend, admin, database_name, folder)
    server = Server(db_url, "--mqtt-url", broker_url,
                    "--mqtt-topic", f"{topics}/hygeia/+/+/obs",
                    "--mqtt-client-id", f"{topics}-hygeia", "--mqtt-session-expiry", "0",
                    *serve, source=source)
    count = StoredCount(server.base)
    try:
        time.sleep(1.0)  # the server subscribes once connected
        cpu = cpu_seconds(server.process.pid)  # includes the count polls (a few %)
        elapsed = run_publishers((host, int(port or 1883)), topics, count, publishers,
                                 readings, window)
        cpu_ms = _server_cpu_ms(server, cpu, publishers * readings)
    finally:
        count.stop()
        server.stop()
    if backend != "sqlite":
        drop_postgres_db(admin, database_name)
    return elapsed, cpu_ms


def measure_mqtt(backend: str, admin: str, broker_url: str, publishers: int,
                 readings: int, serve: tuple[str, ...] = (),
                 prefix: str = "bench_devices", window: int = MQTT_WINDOW,
                 compare: str = "") -> None:
    observations = publishers * readings
    shape = (f"MQTT {publishers} publishers x {readings} readings (QoS 1, window "
             f"{window}, one Observation each)")
    with tempfile.TemporaryDirectory() as folder:
        if compare:  # the other revision first, same minute, database of its own
            other = source_at(compare, Path(folder))
            took, other_ms = mqtt_run(backend, admin, broker_url, publishers, readings,
                                      window, serve, f"{prefix}_mqtt_compare", Path(folder),
                                      other)
            print(f"{backend:<10} {shape} at {compare}: {observations / took:8,.0f} "
                  f"Observations/s stored, {other_ms:.2f} CPU ms each", flush=True)
        elapsed, cpu_ms = mqtt_run(backend, admin, broker_url, publishers, readings, window,
                                   serve, f"{prefix}_mqtt", Path(folder))
        baseline_url = database(backend, admin, f"{prefix}_load", Path(folder))
        baseline, baseline_ms = load_baseline(baseline_url, observations)
        if backend != "sqlite":
            drop_postgres_db(admin, f"{prefix}_load")
    rate = observations / elapsed
    print(f"{backend:<10} {shape}: {rate:8,.0f} Observations/s stored, {cpu_ms:.2f} CPU "
          f"ms each | baseline hygeia load {baseline:8,.0f} Observations/s, "
          f"{baseline_ms:.2f} CPU ms each; ratio {rate / baseline:.2f} (CPU "
          f"{cpu_ms / baseline_ms:.2f}x)", flush=True)


PARTS = ("mllp", "mqtt", "subscriptions")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--compare", default="", metavar="REVISION",
                        help="also run the MLLP and MQTT parts against this git revision's src, "
                             "just before this checkout's (e.g. main)")
    parser.add_argument("--db-prefix", default="bench_devices",
                        help="name prefix of the scratch PostgreSQL databases")
    parser.add_argument("--parts", default=",".join(PARTS), help="of " + ", ".join(PARTS))
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--messages", type=int, default=300, help="messages per sender")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--readings", type=int, default=1000, help="readings per publisher")
    parser.add_argument("--window", type=int, default=MQTT_WINDOW,
                        help="QoS 1 publishes each MQTT publisher keeps in flight (default "
                             f"{MQTT_WINDOW}, paho's; 1 waits for each PUBACK)")
    parser.add_argument("--subscription-rate", type=float, default=500.0,
                        help="Observations per second written while subscribed")
    parser.add_argument("--subscription-seconds", type=float, default=10.0)
    parser.add_argument("--serve", default="", help="more hygeia serve flags for the MLLP "
                        "and MQTT servers, e.g. '--no-news2'")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy this checkout's MLLP server (threads holding the GIL) "
                             "into DIR/mllp-BACKEND.txt (raw collapsed stacks)")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}: choose among {', '.join(PARTS)}")
    for backend in args.backends.split(","):
        if "mllp" in parts:
            measure_mllp(backend, args.postgres, args.senders, args.messages,
                         tuple(args.serve.split()), args.db_prefix, args.compare, args.profile)
        if "mqtt" in parts:
            measure_mqtt(backend, args.postgres, args.mqtt_url, args.publishers,
                         args.readings, tuple(args.serve.split()), args.db_prefix,
                         args.window, args.compare)
        if "subscriptions" in parts:
            subscriptions.measure(backend, args.postgres, 8, args.subscription_rate,
                                  args.subscription_seconds, workers=1, baseline_source=None,
                                  rounds=1)


if __name__ == "__main__":
    main()
