"""User errors of the real ``hygeia`` command: one ``error:`` line with the fix, no traceback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.cli.test_cli import hygeia
from tests.helpers import patient


def single_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one stderr line, after checking the exit code and the fragments it must hold."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.json"
    path.write_bytes(orjson.dumps(patient()))
    return path


def test_missing_file_to_load(tmp_path: Path) -> None:
    result = hygeia("load", "--db", f"sqlite:///{tmp_path}/h.db", str(tmp_path / "gone.json"))
    single_error_line(result, "gone.json", "no such file", "check the path")


@pytest.mark.parametrize("url", ["mysql://root@localhost/hygeia", "sqlite:///",
                                 "postgresql://postgres@127.0.0.1:99999/x", "hygeia.db"])
def test_bad_database_url(url: str, good_file: Path) -> None:
    single_error_line(hygeia("load", "--db", url, str(good_file)), f"--db {url}",
                      "postgresql://user@host:port/dbname" if url != "sqlite:///" else "path")


def test_a_file_that_is_not_a_database(tmp_path: Path, good_file: Path) -> None:
    impostor = tmp_path / "notes.db"
    impostor.write_text("shopping list: milk, eggs, bread, and a good deal more text\n" * 20)
    url = f"sqlite:///{impostor}"
    for command in (("load", "--db", url, str(good_file)),
                    ("serve", "--db", url, "--port", "0"),
                    ("auth", "key", "rotate", "--db", url)):
        single_error_line(hygeia(*command), "is not a database", "Hygeia database")


def test_postgresql_unreachable(good_file: Path) -> None:
    result = hygeia("load", "--db", "postgresql://postgres@127.0.0.1:1/hygeia", str(good_file))
    single_error_line(result, "cannot connect to PostgreSQL", "Connection refused",
                      "check that the server runs")


def test_postgresql_wrong_role(good_file: Path) -> None:
    url = os.environ.get("HYGEIA_TEST_POSTGRES")
    if not url:
        pytest.skip("set HYGEIA_TEST_POSTGRES to run against PostgreSQL")
    host = url.split("@", 1)[1]
    result = hygeia("load", "--db", f"postgresql://no_such_role_h14@{host}", str(good_file))
    single_error_line(result, "cannot connect to PostgreSQL", 'role "no_such_role_h14"')


@pytest.mark.parametrize("port", ["70000", "-5"])
def test_port_out_of_range(port: str, tmp_path: Path) -> None:
    result = hygeia("serve", "--db", f"sqlite:///{tmp_path}/h.db", "--port", port)
    single_error_line(result, f"--port {port} is out of range", "1 to 65535")


def test_debug_shows_the_traceback(good_file: Path) -> None:
    result = hygeia("--debug", "load", "--db", "mysql://x", str(good_file))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_validate_reports_bad_files_and_goes_on(tmp_path: Path, good_file: Path) -> None:
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"resourceType": "Patient", "gender": "fem')
    cut_gzip = tmp_path / "cut.ndjson.gz"
    whole = gzip.compress((orjson.dumps(patient()) + b"\n") * 50)
    cut_gzip.write_bytes(whole[: len(whole) // 2])
    missing = tmp_path / "missing.json"
    result = hygeia("validate", str(truncated), str(missing), str(cut_gzip), str(good_file))
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    out = result.stdout
    assert "truncated.json: not valid JSON" in out
    assert "missing.json: no such file or folder" in out
    assert "cut.ndjson.gz: a compressed file ends too early" in out
    assert out.strip().endswith("1 resources checked, 3 invalid."), out


def test_load_reports_a_truncated_file_and_loads_the_rest(tmp_path: Path,
                                                         good_file: Path) -> None:
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"resourceType": "Patient", "gender": "fem')
    result = hygeia("load", "--quiet", "--db", f"sqlite:///{tmp_path}/h.db", str(truncated),
                    str(good_file))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: " in result.stderr and "truncated.json" in result.stderr
    assert "Loaded 1 resources from 2 files" in result.stdout


def test_a_database_that_cannot_be_made(good_file: Path) -> None:
    result = hygeia("load", "--db", "sqlite:////proc/hygeia-h14/h.db", str(good_file))
    single_error_line(result, "/proc/hygeia-h14", "check the path")


def test_a_parent_folder_that_is_a_file(tmp_path: Path, good_file: Path) -> None:
    result = hygeia("load", "--db", f"sqlite:///{good_file}/h.db", str(good_file))
    single_error_line(result, "good.json", "check the path")


def test_request_threads_below_one(tmp_path: Path) -> None:
    result = hygeia("serve", "--db", f"sqlite:///{tmp_path}/h.db", "--threads", "0")
    single_error_line(result, "--threads 0", "1 or more")


def test_a_key_set_file_that_is_not_json(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text("{not json")
    result = hygeia("auth", "client", "create", "--db", f"sqlite:///{tmp_path}/h.db",
                    "--name", "x", "--scopes", "system/*.rs", "--jwks-file", str(keys))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not JSON" in lines[0] and "JWK Set" in lines[0], lines


@pytest.mark.parametrize(("arguments", "fragments"), [
    (("serv",), ("invalid choice: 'serv'", "run 'hygeia --help'")),
    (("load",), ("hygeia load:", "required: paths", "run 'hygeia load --help'")),
    (("auth", "client", "create"), ("required: --name, --scopes",
                                    "run 'hygeia auth client create --help'")),
    (("serve", "--port", "abc"), ("--port", "'abc'", "run 'hygeia serve --help'")),
])
def test_argument_mistakes_are_one_line_naming_the_help(arguments: tuple[str, ...],
                                                         fragments: tuple[str, ...]) -> None:
    """argparse's own errors used to repeat the whole usage over several lines first."""
    single_error_line(hygeia(*arguments), *fragments)


@pytest.mark.parametrize("content", [b"", b"not a key\n"])
def test_a_secret_key_file_that_holds_no_key(tmp_path: Path, content: bytes) -> None:
    key = tmp_path / "secret.key"
    key.write_bytes(content)
    url = f"sqlite:///{tmp_path}/h.db"
    for command in (("auth", "key", "rotate"), ("serve", "--auth", "--port", "0")):
        result = hygeia(*command, "--db", url, "--secret-key-file", str(key))
        single_error_line(result, f"{key} holds no secret key", "--secret-key-file")


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path: Path) -> None:
    """``hygeia auth client list | head -0``: no traceback about the broken pipe."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hygeia.cli.main", "auth", "client", "list",
         "--db", f"sqlite:///{tmp_path}/h.db"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait(60) == 141, errors
    assert errors == ""
