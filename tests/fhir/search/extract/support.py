"""Helpers for the extraction tests: rows as sets, Synthea fixtures in stored form."""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import orjson

from hygeia.fhir.search.rows import IndexRows

FIXTURES = Path(__file__).parents[3] / "fixtures" / "synthea"
_URN = re.compile(rb'"(urn:uuid:[0-9a-fA-F-]+)"')


def only(rows: list[Any], *codes: str) -> set[Any]:
    """The rows of the given parameter codes, as a set."""
    return {row for row in rows if row[0] in codes}


def all_rows(rows: IndexRows) -> dict[str, set[Any]]:
    return {name: set(getattr(rows, name)) for name in IndexRows.__slots__}


def stored_resources(path: Path) -> list[dict[str, Any]]:
    """A Synthea bundle's resources with urn:uuid references rewritten to Type/id."""
    bundle = orjson.loads(gzip.decompress(path.read_bytes()))
    entries = [entry for entry in bundle["entry"] if "resource" in entry]
    targets = {
        entry["fullUrl"]: f'"{entry["resource"]["resourceType"]}/'
        f'{entry["resource"]["id"]}"'.encode()
        for entry in entries
    }

    def resolve(match: re.Match[bytes]) -> bytes:
        return targets.get(match[1].decode(), match[0])

    resources: list[dict[str, Any]] = orjson.loads(
        _URN.sub(resolve, orjson.dumps([entry["resource"] for entry in entries]))
    )
    return resources


def synthea_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json.gz"))
