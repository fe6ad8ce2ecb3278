"""``hygeia validate``: check files against the R4 StructureDefinitions, file by file.

A missing, truncated or unreadable file is reported on its own line and the
others are still checked, as ``hygeia load`` does; the last line counts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hygeia.cli.errors import reading_problem


def validate_files(paths: list[str]) -> int:
    """Validate every resource under ``paths``; a bad file is reported and the rest go on."""
    checked = invalid = 0
    for path in _validation_files(paths):
        if isinstance(path, str):  # a path that names nothing
            invalid += 1
            print(f"{path}: no such file or folder")
            continue
        try:
            for where, resource in _resources_in(path):
                checked += 1
                invalid += not _report_issues(where, resource)
        except (OSError, EOFError, ValueError) as error:
            invalid += 1
            print(f"{path}: {reading_problem(error)}")
    print(f"{checked} resources checked, {invalid} invalid.")
    return 1 if invalid else 0


def _validation_files(paths: list[str]) -> list[Path | str]:
    """The files under ``paths``, with a missing path kept as its name (str) to report."""
    from hygeia.cli.sources import expand_paths

    found: list[Path | str] = []
    for name in paths:
        try:
            found.extend(expand_paths([name]))
        except FileNotFoundError:
            found.append(name)
    return found


def _resources_in(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, resource or the JSON error) for each resource of one file."""
    from hygeia.cli.sources import is_ndjson, read_json, read_ndjson

    if not is_ndjson(path):
        yield str(path), read_json(path)
        return
    for number, resource in read_ndjson(path):
        yield f"{path}:{number}", resource


def _report_issues(where: str, resource: Any) -> bool:
    """Print the resource's issues; True when it is valid."""
    from hygeia.fhir.validation import validate

    if isinstance(resource, Exception):
        print(f"{where}: not JSON: {resource}")
        return False
    issues = validate(resource)
    for issue in issues:
        print(f"{where}: {issue.severity} {issue.expression or '-'}: {issue.diagnostics}")
    return not issues
