"""Run the shell examples of README.md and docs/guide/*.md as a reader would.

A reader copies a page's ```sh blocks into one shell, top to bottom, next to a
fresh ``hygeia serve --demo``; this module does the same so that an example
which no longer works fails the test suite instead of a reader.

What it does, page by page:

- It makes an empty working directory holding ``tests/fixtures`` (a symlink
  into this repository: the only repository path the examples read) and a
  ``hygeia`` command on ``PATH`` that runs this checkout's code, followed by the
  scripts of the Python environment running the tests (``mllp_send``, which
  python-hl7 installs beside ``hygeia``), as in an activated virtualenv.
- It starts ``hygeia serve --demo`` there, as the README says, on a free port
  (the documented port 8080 may be taken on a CI machine or by another test
  run).  Every ``127.0.0.1:8080`` in a page's examples and shown outputs is
  rewritten to that port, and nothing else is: the commands run as written.
- It runs each ```sh block with ``bash -e`` in that directory.  Shell
  variables carry over from one block to the next (``BASE=...`` set once,
  ``$PATIENT`` found by one block and used by the next), as in one terminal.
  A block fails when a command fails, when it prints a Python traceback, or
  when its output does not match the block shown right after it (only blank
  lines between):

  * a ```text block matches the output (stdout and stderr together) line for
    line, trailing blanks ignored; ``...`` stands for any text, on one line
    or across several (ids, timestamps, durations);
  * a ```json block is a pattern the output's JSON must match: an object may
    hold more members than shown, a list's shown items must appear in order
    (others may lie between), and ``...`` in a string stands for any text.

HTML comments just before a block steer it (a reader does not see them):

- ``<!-- example: not run — REASON -->``: the block is shown, not run (a
  long-running server, another database, a command that takes minutes).  A
  reason is required; :func:`summary` lists them.
- ``<!-- example: server FLAGS -->``: the page's server is restarted with
  ``--demo FLAGS`` (same directory and database, as a reader restarting it)
  before this block, and keeps those flags for the blocks after it.

``python -m tests.docs_examples`` prints how many examples run and why the
others do not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DOCUMENTED_ADDRESS = "127.0.0.1:8080"
EXAMPLE_TIMEOUT = 120
_MARKER = re.compile(r"<!--\s*example:\s*(?P<kind>not run|server)\b\s*(?P<rest>.*?)\s*-->")
_ENV_FILE = ".example-env"


def pages() -> list[Path]:
    """The Markdown pages whose examples must run: README.md and the user guide."""
    return [REPO / "README.md", *sorted((REPO / "docs" / "guide").glob("*.md"))]


@dataclasses.dataclass(frozen=True)
class Example:
    """One ```sh block: where it is, what it runs, and what it must print."""

    page: Path
    line: int  # of the opening fence, 1-based
    script: str
    expected: str | None = None
    expected_kind: str | None = None  # "text" or "json"
    not_run: str | None = None  # the reason it is only shown
    server_flags: tuple[str, ...] | None = None  # restart the server with these first

    @property
    def where(self) -> str:
        return f"{_shown_path(self.page)}:{self.line}"


def _shown_path(page: Path) -> str:
    return str(page.relative_to(REPO) if page.is_relative_to(REPO) else page)


class ExampleError(AssertionError):
    """An example failed; the message names the page and line."""


def examples(page: Path) -> list[Example]:
    """Every ```sh block of ``page``, with its marker and the output shown after it."""
    lines = page.read_text().splitlines()
    found, marker, index = [], None, 0
    while index < len(lines):
        line = lines[index]
        if match := _MARKER.search(line):
            marker = match
        elif line.startswith("```sh"):
            (fence_line, body), index = _fenced(lines, index)
            expected, kind, index = _shown_output(lines, index)
            found.append(_example(page, fence_line, body, expected, kind, marker))
            marker = None
            continue
        elif line.strip():
            marker = None
        index += 1
    return found


def _fenced(lines: list[str], start: int) -> tuple[tuple[int, list[str]], int]:
    """(the fence's 1-based line number, the lines inside it), the index after its close."""
    end = start + 1
    while end < len(lines) and not lines[end].startswith("```"):
        end += 1
    return (start + 1, lines[start + 1:end]), end + 1


def _shown_output(lines: list[str], start: int) -> tuple[str | None, str | None, int]:
    """A ```text or ```json block right after a command (blank lines between only)."""
    index = start
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index < len(lines) and lines[index] in ("```text", "```json"):
        (_, body), after = _fenced(lines, index)
        return "\n".join(body), lines[index][3:], after
    return None, None, start


def _example(page: Path, line: int, body: list[str], expected: str | None, kind: str | None,
             marker: re.Match[str] | None) -> Example:
    text = "\n".join(body)
    not_run, flags = None, None
    if marker is not None and marker["kind"] == "not run":
        not_run = marker["rest"].lstrip("—-: ").strip()
        if not not_run:
            raise ExampleError(f"{_shown_path(page)}:{line}: 'not run' needs a reason")
    elif marker is not None:
        flags = tuple(shlex.split(marker["rest"]))
    return Example(page, line, text, expected, kind, not_run, flags)


# ------------------------------------------------------------------ matching outputs


def text_matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` line for line, ``...`` standing for any text."""
    pattern = re.escape(_tidy(expected)).replace(re.escape("..."), ".*?")
    return re.fullmatch(pattern, _tidy(actual), re.DOTALL) is not None


def _tidy(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")


def json_matches(expected: Any, actual: Any) -> bool:
    """``actual`` holds what ``expected`` shows (see the module docstring)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and json_matches(value, actual[key]) for key, value in expected.items())
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False
        remaining = iter(actual)
        return all(any(json_matches(item, candidate) for candidate in remaining)
                   for item in expected)
    if isinstance(expected, str) and "..." in expected:
        return isinstance(actual, str) and text_matches(expected, actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual  # JSON true is not 1
    return bool(expected == actual)


# ------------------------------------------------------------------ running a page


class PageRun:
    """A working directory, a ``hygeia serve --demo`` and a shell state for one page."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.server: subprocess.Popen[bytes] | None = None
        self.flags: tuple[str, ...] = ()
        self.log = folder / ".server.log"
        self.ran = 0  # examples run so far
        (folder / "tests").mkdir()
        (folder / "tests" / "fixtures").symlink_to(REPO / "tests" / "fixtures")
        bin_folder = folder / ".bin"
        bin_folder.mkdir()
        wrapper = bin_folder / "hygeia"
        python = shlex.quote(sys.executable)
        wrapper.write_text(f'#!/bin/sh\nexec {python} -m hygeia.cli.main "$@"\n')
        wrapper.chmod(0o755)
        scripts = Path(sys.executable).parent
        self.env = {**os.environ, "PATH": f"{bin_folder}:{scripts}:{os.environ['PATH']}",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                os.environ.get("PYTHONPATH")]))}
        for name in [name for name in self.env if name.startswith("HYGEIA_")]:
            del self.env[name]  # a reader's shell sets none: HYGEIA_DB would move the server

    def localise(self, text: str) -> str:
        return text.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{self.port}")

    def start(self, flags: tuple[str, ...] = ()) -> None:
        """(Re)start the server; before any example ran, a port another process took
        meanwhile is swapped for a new one (afterwards the shell state holds the port)."""
        self.stop()
        self.flags = flags
        for _ in range(3):
            if self._started():
                return
            if self.server is not None and self.ran == 0:
                self.port = _free_port()
        raise ExampleError(f"hygeia serve --demo {' '.join(flags)} did not start:\n"
                           + self.log.read_text())

    def _started(self) -> bool:
        self.log.write_text("")
        with self.log.open("ab") as log:
            self.server = subprocess.Popen(
                ["hygeia", "serve", "--demo", "--port", str(self.port), *self.flags],
                cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.server.poll() is None:
            # the banner first: another server on a reused port would answer /ready too
            if f"server at http://127.0.0.1:{self.port}/fhir" in self.log.read_text() and \
                    _answers_ready(self.port):
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(5)

    def run(self, example: Example) -> str:
        """Run one example and check it; returns its output."""
        if example.server_flags is not None and example.server_flags != self.flags:
            self.start(example.server_flags)
        elif self.server is None:  # started for the first example that runs
            self.start(self.flags)
        script = (f"[ -f {_ENV_FILE} ] && source {_ENV_FILE}\n"
                  f"trap 'export -p > {_ENV_FILE}' EXIT\nset -ea\n"
                  f"{self.localise(example.script)}\n")
        try:
            result = subprocess.run(["bash", "--noprofile", "--norc", "-c", script],
                                    cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    timeout=EXAMPLE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ExampleError(
                f"{example.where}: still running after {EXAMPLE_TIMEOUT} s") from None
        self.ran += 1
        output = result.stdout.decode("utf-8", "replace")
        self._check(example, result.returncode, output)
        return output

    def _check(self, example: Example, status: int, output: str) -> None:
        shown = f"{example.where}: the example\n{example.script}\nprinted\n{output}"
        if status != 0:
            raise ExampleError(f"{shown}\nand failed with exit status {status}")
        if "Traceback (most recent call last)" in output:
            raise ExampleError(f"{shown}\na traceback")
        if example.expected is None:
            return
        expected = self.localise(example.expected)
        if example.expected_kind == "json":
            try:
                matches = json_matches(json.loads(expected), json.loads(output))
            except json.JSONDecodeError as error:
                raise ExampleError(f"{shown}\nwhich is not the JSON shown ({error})") from None
        else:
            matches = text_matches(expected, output)
        if not matches:
            raise ExampleError(f"{shown}\nnot what the page shows:\n{expected}")


def run_page(page: Path, folder: Path) -> tuple[int, int]:
    """Run every example of ``page`` in ``folder``; (run, not run) counts."""
    page_run = PageRun(folder)
    ran = 0
    page_examples = examples(page)
    try:
        for example in page_examples:
            if example.not_run is None:
                page_run.run(example)
                ran += 1
    finally:
        page_run.stop()
    return ran, len(page_examples) - ran


def _answers_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summary() -> Iterator[str]:
    """One line per page, then every example that is not run with its reason."""
    everything = [example for page in pages() for example in examples(page)]
    skipped = [example for example in everything if example.not_run is not None]
    yield f"{len(everything) - len(skipped)} examples run, {len(skipped)} not run"
    for example in skipped:
        yield f"  {example.where}: {example.not_run}"


if __name__ == "__main__":
    print("\n".join(summary()))
