"""``hygeia serve`` options from HYGEIA_* environment variables, through the real command:
a server configured only by its environment uses it (seen over HTTP), a flag on the
command line wins over its variable, and a bad value is one ``error:`` line naming it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from hygeia.cli.errors import UserError
from hygeia.cli.main import parse_arguments
from tests.cli.test_cli import hygeia
from tests.cli.test_errors import single_error_line
from tests.conftest import ServerProcess, free_port


def _values(count: int) -> str:
    return ",".join(f"id-{number}" for number in range(count))


def _too_many(response: httpx.Response, limit: int) -> bool:
    """Whether ``response`` is the 400 of the search value limit at ``limit``."""
    return response.status_code == 400 and \
        f"has more than {limit} comma-separated values" in response.text


@pytest.fixture
def environment_only_server(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """``hygeia serve`` with no flag at all: port, database, limit and access log all
    come from the environment."""
    port, database, log = free_port(), tmp_path / "from-env.db", tmp_path / "access.log"
    env = {**os.environ, "HYGEIA_PORT": str(port), "HYGEIA_DB": f"sqlite:///{database}",
           "HYGEIA_MAX_SEARCH_VALUES": "3", "HYGEIA_ACCESS_LOG": "yes",
           "HYGEIA_LOG_FORMAT": "json"}
    process = subprocess.Popen([sys.executable, "-m", "hygeia.cli.main", "serve"], env=env,
                               stdout=log.open("wb"), stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "server did not start within 60 s"
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base, database, log
    finally:
        process.terminate()
        process.wait(10)


def test_a_server_configured_by_its_environment(
        environment_only_server: tuple[str, Path, Path]) -> None:
    base, database, log = environment_only_server  # it answers on HYGEIA_PORT
    assert database.exists()  # HYGEIA_DB
    assert httpx.get(f"{base}/Patient", params={"_id": _values(3)}).status_code == 200
    assert _too_many(httpx.get(f"{base}/Patient", params={"_id": _values(4)}), 3)
    deadline = time.monotonic() + 10  # a request is logged just after its answer
    while log.read_text().count('"status":400') < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # HYGEIA_ACCESS_LOG=yes and HYGEIA_LOG_FORMAT=json: one JSON object per request
    entries = [orjson.loads(line) for line in log.read_text().splitlines()]
    assert [entry["status"] for entry in entries if entry["path"] == "/fhir/Patient"] == \
        [200, 400]


def test_the_command_line_wins_over_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYGEIA_MAX_SEARCH_VALUES", "3")
    monkeypatch.setenv("HYGEIA_PORT", "1")  # ServerProcess gives --port: a free one
    monkeypatch.setenv("HYGEIA_DB", "sqlite:///")  # and --db: a valid one
    server = ServerProcess(f"sqlite:///{tmp_path}/flags.db", "--max-search-values", "5")
    try:
        assert server.client.get("Patient", params={"_id": _values(5)}).status_code == 200
        assert _too_many(server.client.get("Patient", params={"_id": _values(6)}), 5)
    finally:
        server.stop()


@pytest.mark.parametrize(("variable", "value", "fragment"), [
    ("HYGEIA_MAX_SEARCH_VALUES", "lots", "is not a whole number (it stands for "
                                         "--max-search-values)"),
    ("HYGEIA_OUTBOUND_TIMEOUT", "5s", "is not a number (it stands for --outbound-timeout)"),
    ("HYGEIA_AUTH", "maybe", "give 1, true or yes to turn --auth on"),
    ("HYGEIA_LOG_FORMAT", "xml", "give one of text, json"),
])
def test_a_bad_value_is_one_error_line_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
        fragment: str) -> None:
    monkeypatch.setenv(variable, value)
    result = hygeia("serve", "--db", f"sqlite:///{tmp_path}/bad.db", "--port", "0")
    single_error_line(result, f"{variable}={value}", fragment)
    assert not (tmp_path / "bad.db").exists()  # refused before anything was opened


def test_only_serve_reads_the_environment(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYGEIA_PORT", "not-a-port")
    good = tmp_path / "empty-folder"
    good.mkdir()
    assert hygeia("validate", str(good)).returncode == 0


def _serve_with(environ: dict[str, str], *argv: str) -> argparse.Namespace:
    return parse_arguments(["serve", *argv], environ)


def test_switches_lists_and_empty_values() -> None:
    args = _serve_with({"HYGEIA_AUTH": "TRUE", "HYGEIA_DEMO": "no", "HYGEIA_BASE_URL": "",
                        "HYGEIA_OUTBOUND_ALLOW": "10.0.0.0/8, jwks.internal,"})
    assert args.auth is True and args.demo is False
    assert args.base_url is None  # empty: unset
    assert args.outbound_allow == ["10.0.0.0/8", "jwks.internal"]
    flagged = _serve_with({"HYGEIA_OUTBOUND_ALLOW": "10.0.0.0/8"},
                          "--outbound-allow", "192.168.1.1")
    assert flagged.outbound_allow == ["192.168.1.1"]  # the flags replace the list
    with pytest.raises(UserError, match="HYGEIA_THREADS=two"):
        _serve_with({"HYGEIA_THREADS": "two"})
