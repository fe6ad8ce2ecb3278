"""Dependencies point inward only: fhir <- store <- server <- api <- cli (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "hygeia"
RINGS = {"fhir": 0, "store": 1, "server": 2, "api": 3, "cli": 4}  # cli serves the api


def imported_rings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.split(".")[1] for name in names
            if name.startswith("hygeia.") and name.split(".")[1] in RINGS}


@pytest.mark.parametrize("ring", sorted(RINGS))
def test_ring_imports_only_inner_rings(ring: str) -> None:
    level = RINGS[ring]
    offenders = []
    for path in (PACKAGE / ring).rglob("*.py"):
        for target in imported_rings(path):
            if RINGS[target] > level or (RINGS[target] == level and target != ring):
                offenders.append(f"{path.relative_to(PACKAGE)} imports hygeia.{target}")
    assert not offenders, offenders


def test_fhir_core_has_no_io_or_web_imports() -> None:
    forbidden = {"starlette", "uvicorn", "psycopg", "sqlite3", "httpx"}
    for path in (PACKAGE / "fhir").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & forbidden, path


def test_the_package_imports_only_its_declared_dependencies() -> None:
    """``pip install hygeia`` (without the test extras) must be enough to run it: every
    third-party module the package imports belongs to a core dependency in pyproject."""
    import re
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((PACKAGE.parent.parent / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-")
                for spec in project["dependencies"]}
    providers = packages_distributions()
    undeclared = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "hygeia" or top in sys.stdlib_module_names:
                    continue
                names = {name.lower().replace("_", "-") for name in providers.get(top, [top])}
                if not names & declared:
                    undeclared.add(f"{path.relative_to(PACKAGE)}: {module}")
    assert not undeclared, sorted(undeclared)
