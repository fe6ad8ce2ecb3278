"""Shared benchmark plumbing: data files, server processes, peak RSS."""

from __future__ import annotations

import gzip
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import SplitResult

import httpx

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def bundle_files(data: Path) -> list[Path]:
    files = sorted(data.glob("*.json.gz")) + sorted(data.glob("*.json"))
    if not files:
        sys.exit(f"no bundles in {data}; pass --data")
    return files


def read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def reidentify(body: bytes, copy: int) -> bytes:
    """``body`` with every UUID replaced by one derived from it and ``copy`` (0: unchanged).

    The same UUID maps to the same new one wherever it appears in a copy, so references
    between resources (and between bundles of one copy) still agree.
    """
    if copy == 0:
        return body
    salt = f"copy{copy}"
    return UUID.sub(lambda m: str(uuid.uuid5(uuid.NAMESPACE_URL, salt + m.group(0).decode()))
                    .encode(), body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``hygeia serve`` in a child process."""

    def __init__(self, db_url: str, *extra: str, source: Path | None = None,
                 cwd: Path | None = None) -> None:
        """``source``: another checkout's ``src`` folder to serve instead of this one.

        ``cwd``: where the server runs, so files it writes relative to its working
        directory (bulk export files on PostgreSQL) land there and not in the checkout.
        """
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = str(source)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hygeia.cli.main", "serve", "--port", str(self.port),
             "--db", db_url, "--max-body-mb", "256", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)
        self.memory = TreeMemory(self.process.pid)

    def peak_pss_mb(self) -> float:
        """The most memory the server held at once (sampled total PSS, see TreeMemory)."""
        return self.memory.peak_pss_mb()

    def peak_rss_mb(self) -> float:
        """VmHWM summed over the server's processes (its supervisor and its workers).

        Each figure is the most resident memory that process has had since it started.
        """
        return sum(_peak_rss_kb(pid) for pid in _process_tree(self.process.pid)) / 1024

    def stop(self) -> None:
        self.memory.stop()
        self.process.terminate()
        self.process.wait(30)


class TreeMemory:
    """Samples the memory of a process and all its descendants, four times a second.

    PSS splits pages that processes share (a worker forked off its parent) between
    them, so the summed PSS is the memory the tree really holds at that moment; its
    largest sample is the peak.  Each process's VmHWM (its own peak resident size) is
    remembered too, so the sum survives processes that have exited by the end.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self._peak_pss_kb = 0
        self._hwm_kb: dict[int, int] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample now (also useful right before the process is reaped)."""
        pids = _process_tree(self.pid)
        self._peak_pss_kb = max(self._peak_pss_kb, sum(_pss_kb(pid) for pid in pids))
        for pid in pids:
            self._hwm_kb[pid] = max(self._hwm_kb.get(pid, 0), _peak_rss_kb(pid))

    def peak_pss_mb(self) -> float:
        return self._peak_pss_kb / 1024

    def hwm_sum_mb(self) -> float:
        """VmHWM summed over every process of the tree seen in any sample."""
        return sum(self._hwm_kb.values()) / 1024

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def _process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    try:
        listed = children.read_text().split()
    except OSError:  # not there, or it exited between two samples
        return found
    for child in listed:
        found.extend(_process_tree(int(child)))
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU the live processes of ``pid``'s tree (``hygeia serve`` and the
    serving processes it forks) have used so far, from Linux /proc: robust to other load
    on a shared machine, where rates are not."""
    total = 0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(database: str) -> float:
    """User and system CPU the live PostgreSQL backends connected to ``database`` have
    used so far (their process title names it: ``postgres: 15/main: user database
    host(port) state``). A backend that exited since an earlier reading takes its CPU
    with it, so this undercounts a server that closes connections; a pool keeps them."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()
            if len(title) < 4 or title[0] != b"postgres:" or \
                    database.encode() not in title[2:4]:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _peak_rss_kb(pid: int) -> int:
    return _proc_kb(pid, "status", "VmHWM:")


def _pss_kb(pid: int) -> int:
    return _proc_kb(pid, "smaps_rollup", "Pss:")


def _proc_kb(pid: int, name: str, key: str) -> int:
    """The kB figure on line ``key`` of ``/proc/PID/NAME``; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def fresh_postgres_db(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_db(admin_url: str, name: str) -> None:
    """Remove a scratch database again (large runs leave gigabytes behind otherwise)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def source_at(revision: str, directory: Path) -> Path:
    """The ``src`` folder of ``revision`` of this repository, unpacked into ``directory``."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", revision, "src"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory / "src"


def timed_get(local: threading.local, address: SplitResult, target: str,
              kind: str) -> float:
    """Seconds one GET of ``target`` took on this thread's own keep-alive connection.

    http.client, not httpx: httpx spent 1.4 ms of client CPU per request, which on
    a 2-core machine the server under test could not use.
    """
    connection = getattr(local, "connection", None)
    if connection is None:
        connection = local.connection = http.client.HTTPConnection(
            address.hostname or "127.0.0.1", address.port, timeout=120)
    started = time.perf_counter()
    connection.request("GET", target)
    response = connection.getresponse()
    content = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"{kind}: {response.status} {content[:300]!r}")
    return elapsed


def start_py_spy(pid: int, output: Path, rate: int, *flags: str) -> subprocess.Popen[bytes]:
    """py-spy sampling process ``pid`` and its children into ``output`` (collapsed
    stacks, one ``frame;frame;... count`` a line); ``flags`` choose what is sampled
    (``--gil``: where the CPU goes; ``--idle --threads``: where each thread's wall time
    goes). Waits a second so it is attached before the measured work starts."""
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    process = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--subprocesses",
                                "--format", "raw", "--rate", str(rate), *flags,
                                "--output", str(output)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return process


def stop_py_spy(spy: subprocess.Popen[bytes] | None) -> None:
    """Stop a :func:`start_py_spy` sampler; py-spy writes its file on SIGINT."""
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=120)
