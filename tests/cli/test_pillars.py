"""A pillar is found through its package metadata and plugs into ``hygeia``: its serve
flags, its operation, its mount (with its own body limit), its listeners (in one serving
process, or in every one on a port ``hygeia serve`` bound) and its command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, free_port

REPOSITORY = Path(__file__).parent.parent.parent


def install_metadata(site: Path, entry: str) -> None:
    """The package metadata an installed pillar has: a dist-info with its entry point."""
    info = site / "example_pillar-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: example-pillar\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(f"[hygeia.pillars]\nexample = {entry}\n")


@pytest.fixture
def with_pillar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    site = tmp_path / "site"
    install_metadata(site, "tests.cli.example_pillar:PILLAR")
    path = [str(site), str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    yield


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_pillar_brings_its_command_and_serve_flags(with_pillar: None) -> None:
    said = hygeia("hello", "--who", "Hygeia")
    assert (said.returncode, said.stdout) == (0, "hello Hygeia\n")
    help_text = hygeia("serve", "--help").stdout
    assert "example pillar:" in help_text and "--hello-port N" in help_text


def test_the_pillar_serves_its_operation_and_one_listener(with_pillar: None,
                                                          tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(f"sqlite:///{tmp_path}/pillar.db", "--hello-port", str(port),
                           "--workers", "2")
    try:
        answer = server.client.get("$hello")
        assert answer.status_code == 200
        assert answer.json()["parameter"][0]["valueString"] == "hello from the example pillar"
        statement = server.client.get("metadata").json()
        assert "hello" in {op["name"] for op in statement["rest"][0]["operation"]}
        root = server.base.removesuffix("/fhir")
        mounted = httpx.post(f"{root}/hello/there?x=1", content=b"a" * 1000)
        assert mounted.status_code == 200
        assert mounted.json() == {"method": "POST", "path": "/hello/there", "bytes": 1000,
                                  "root": root, "query": {"x": "1"}}
        too_large = httpx.post(f"{root}/hello", content=b"a" * 1025)  # its own 1 KB limit
        assert too_large.status_code == 413
        assert too_large.json()["resourceType"] == "OperationOutcome"
        failed = httpx.get(f"{root}/hello/fail")
        assert failed.status_code == 400
        assert failed.json()["issue"][0]["diagnostics"] == "Asked to fail."
        for _ in range(3):  # two serving processes, one listener: the port was bound once
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                assert connection.recv(16) == b"hello\n"
    finally:
        server.stop()
    with pytest.raises(OSError):  # stopped with the server
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_listener_with_a_declared_address_serves_in_every_process(
        with_pillar: None, tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(f"sqlite:///{tmp_path}/pid.db", "--pid-port", str(port),
                           "--workers", "2")
    try:
        workers = {int(pid) for pid in Path(
            f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
            if b"offload" not in Path(f"/proc/{pid}/cmdline").read_bytes()}
        answered: set[int] = set()
        for _ in range(40):  # short connections: the kernel wakes each process in turn
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                answered.add(int(connection.recv(16)))
            if answered == workers:
                break
        assert answered == workers and len(workers) == 2
    finally:
        server.stop()


def test_a_pillar_that_cannot_load_is_one_error_line(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_metadata(site, "no_such_module_anywhere:PILLAR")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(REPOSITORY)]))
    result = hygeia("validate", "x.json")
    assert result.returncode == 2
    assert result.stderr.startswith("error: the pillar 'example'")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_the_pillar_extends_the_demo(with_pillar: None, tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path}/demo.db", "--demo", stdout=subprocess.PIPE)
    try:
        assert server.client.get("Basic/hello-demo").json()["code"]["text"] == "hello demo"
        assert server.client.get("$hello").status_code == 200
    finally:
        server.stop()
    printed = server.process.stdout.read().decode() if server.process.stdout else ""
    assert "Example pillar:" in printed and f"curl -s '{server.base}/$hello'" in printed


def test_hygeia_pillars_chooses_the_pillars_that_run(with_pillar: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYGEIA_PILLARS", "none")
    assert "example pillar:" not in hygeia("serve", "--help").stdout
    monkeypatch.setenv("HYGEIA_PILLARS", "example")
    assert "example pillar:" in hygeia("serve", "--help").stdout
    monkeypatch.setenv("HYGEIA_PILLARS", "example,nothing-here")
    refused = hygeia("serve", "--help")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: HYGEIA_PILLARS names nothing-here, which is not "
                                     "an installed pillar (installed: ")
