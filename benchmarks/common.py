"""Shared benchmark plumbing: data files, server processes, peak RSS."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def bundle_files(data: Path) -> list[Path]:
    files = sorted(data.glob("*.json.gz")) + sorted(data.glob("*.json"))
    if not files:
        sys.exit(f"no bundles in {data}; pass --data")
    return files


def read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``hygeia serve`` in a child process."""

    def __init__(self, db_url: str, *extra: str, source: Path | None = None) -> None:
        """``source``: another checkout's ``src`` folder to serve instead of this one."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = str(source)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hygeia.cli.main", "serve", "--port", str(self.port),
             "--db", db_url, "--max-body-mb", "256", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)
        self._peak_pss_kb = 0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample_memory, daemon=True)
        self._sampler.start()

    def _sample_memory(self) -> None:
        """Track the largest total PSS of the server's processes, four times a second.

        PSS splits pages that processes share (the worker forked off the supervisor)
        between them, so the sum is the memory the server really holds at that moment.
        """
        while not self._sampling.wait(0.25):
            total = sum(_pss_kb(pid) for pid in _process_tree(self.process.pid))
            self._peak_pss_kb = max(self._peak_pss_kb, total)

    def peak_pss_mb(self) -> float:
        """The most memory the server held at once (sampled total PSS, see above)."""
        return self._peak_pss_kb / 1024

    def peak_rss_mb(self) -> float:
        """VmHWM summed over the server's processes (its supervisor and its workers).

        Each figure is the most resident memory that process has had since it started.
        """
        return sum(_peak_rss_kb(pid) for pid in _process_tree(self.process.pid)) / 1024

    def stop(self) -> None:
        self._sampling.set()
        self.process.terminate()
        self.process.wait(30)


def _process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found.extend(_process_tree(int(child)))
    return found


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


def source_at(revision: str, directory: Path) -> Path:
    """The ``src`` folder of ``revision`` of this repository, unpacked into ``directory``."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", revision, "src"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory / "src"
