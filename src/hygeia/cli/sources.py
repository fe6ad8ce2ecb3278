"""Reading FHIR input files: Bundles (.json/.json.gz), NDJSON (.ndjson[.gz]) and folders."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

SUFFIXES = (".json", ".json.gz", ".ndjson", ".ndjson.gz")


def expand_paths(paths: list[str]) -> list[Path]:
    """Files named directly, plus every FHIR file under the folders named (sorted)."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()
                                and p.name.endswith(SUFFIXES)))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{name}: no such file or folder")
    return found


def open_text(path: Path) -> IO[bytes]:
    """Open plain or gzipped files alike (Synthea and bulk exports are often gzipped)."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    # a large buffer: each refill releases the interpreter lock, and getting it back
    # waits on the loader's committing thread (up to the switch interval)
    return path.open("rb", buffering=1 << 20)


def is_ndjson(path: Path) -> bool:
    return path.name.endswith((".ndjson", ".ndjson.gz"))


def read_json(path: Path) -> Any:
    with open_text(path) as handle:
        return orjson.loads(handle.read())


def read_ndjson(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed resource or the JSONDecodeError) for every non-blank line."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as error:
                yield number, error
