"""The examples of README.md and docs/guide/*.md run as written against a fresh
``hygeia serve --demo`` and print what the pages show (tests/docs_examples.py).

The pages run side by side (each with its own server and folder), so the test
takes about as long as the slowest page rather than the sum (measured on two cores
shared with other work: 32 s, against 45 s one page after another).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.docs_examples import (
    REPO,
    ExampleError,
    PageRun,
    examples,
    json_matches,
    pages,
    run_page,
    text_matches,
)

PAGES_AT_ONCE = 3


@pytest.fixture(scope="module")
def page_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[dict[Path, Future[tuple[int, int]]]]:
    """Every selected page's run, started at once, the pages with most examples first."""
    chosen = {item.callspec.id for item in request.session.items
              if isinstance(item, pytest.Function) and item.originalname == _PAGE_TEST.__name__}
    selected = [page for page in pages() if _page_id(page) in chosen]
    selected.sort(key=lambda page: -len(examples(page)))
    with ThreadPoolExecutor(PAGES_AT_ONCE) as pool:
        yield {page: pool.submit(run_page, page, tmp_path_factory.mktemp(page.stem))
               for page in selected}


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", pages(), ids=_page_id)
def test_every_example_of_the_page_runs_as_shown(
        page: Path, page_runs: dict[Path, Future[tuple[int, int]]]) -> None:
    ran, not_run = page_runs[page].result()
    assert ran + not_run == len(examples(page))
    print(f"{page.relative_to(REPO)}: {ran} examples run, {not_run} not run")


_PAGE_TEST = test_every_example_of_the_page_runs_as_shown


def test_most_examples_run_and_every_other_says_why() -> None:
    everything = [example for page in pages() for example in examples(page)]
    skipped = [example for example in everything if example.not_run is not None]
    assert all(example.not_run for example in skipped)
    assert len(everything) - len(skipped) >= 2 * len(skipped), [e.where for e in skipped]


def test_a_not_run_marker_without_a_reason_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- example: not run -->\n```sh\ntrue\n```\n")
    with pytest.raises(ExampleError, match="needs a reason"):
        examples(page)


def test_the_output_after_a_block_and_the_markers_are_read(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Text.\n\n<!-- example: server --auth --audit -->\n```sh\necho hi\n```\n\n"
                    "```text\nhi\n```\n\n```sh\ntrue\n```\nProse.\n```text\nnot its output\n```\n")
    first, second = examples(page)
    assert (first.line, first.script, first.expected, first.expected_kind) == \
        (4, "echo hi", "hi", "text")
    assert first.server_flags == ("--auth", "--audit")
    assert (second.line, second.expected, second.server_flags) == (12, None, None)


def test_shown_text_matches_with_wildcards() -> None:
    assert text_matches("id: ...\ndone in ... s", "id: 3f2a\ndone in 0.4 s  \n")
    assert text_matches("first\n...\nlast", "first\nsecond\nthird\nlast")
    assert not text_matches("id: 3f2a", "id: 3f2b")
    assert not text_matches("first", "first\nsecond")


def test_shown_json_matches_loosely() -> None:
    actual = {"id": "a1", "total": 2, "entry": [{"n": 1}, {"n": 2}, {"n": 3}], "meta": {}}
    assert json_matches({"id": "...", "entry": [{"n": 1}, {"n": 3}]}, actual)
    assert not json_matches({"entry": [{"n": 3}, {"n": 1}]}, actual)
    assert not json_matches({"total": 3}, actual)
    assert not json_matches({"missing": "..."}, actual)
    assert not json_matches({"total": True}, {"total": 1})
    assert json_matches({"active": False}, {"active": False})


def test_a_port_taken_before_the_first_example_is_swapped(tmp_path: Path) -> None:
    """Another process may take the free port before the server binds it; then the
    runner starts the server on another one (no example has used the port yet)."""
    run = PageRun(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        run.port = busy.getsockname()[1]
        try:
            run.start()
            assert run.port != busy.getsockname()[1]
            assert f"server at http://127.0.0.1:{run.port}/fhir" in run.log.read_text()
        finally:
            run.stop()
