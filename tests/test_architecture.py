"""The import rules of docs/architecture.md, checked on the source.

Rings: fhir 0 < store 1 < server 2 < pillars 3 < api 4 < cli 5; a module imports
only from its own ring or inner ones. Every import counts: module level, under
``TYPE_CHECKING`` and inside functions, because each is a dependency someone
has to understand. There is no import cycle of any size; outside ``store/``
only the store's public API (``hygeia.store``) is imported; pillars never
import one another; and the helper and worker processes do not import the
service, auth or audit.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "hygeia"
CORE_RINGS = {"fhir": 0, "store": 1, "server": 2, "api": 4, "cli": 5}
PILLAR_RING = 3
WORKER_ENTRY_POINTS = ["hygeia.server.loading.worker", "hygeia.server.offload.worker"]
HEAVY_FOR_WORKERS = ("hygeia.server.service", "hygeia.server.auth", "hygeia.server.audit")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_names(path: Path) -> Iterable[str]:
    """Every ``hygeia`` module (or package) the file imports, wherever the import is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the modules it imports (``from pkg import mod`` counts as importing mod)."""
    known = modules()
    return {name: frozenset(t for t in imported_names(path) if t in known and t != name)
            for name, path in known.items()}


def ring_of(module: str) -> tuple[str, int]:
    top = module.split(".")[1] if "." in module else ""
    return top, CORE_RINGS.get(top, PILLAR_RING)


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of nodes that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group))
    return groups


def test_cycle_finder_finds_cycles_of_any_size() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d2"], "d2": [], "e": ["e"]}
    groups = [g for g in strongly_connected(edges) if len(g) > 1]
    assert groups == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    edges = graph()
    # A package's __init__ importing its own submodules is not a cycle of design.
    cycles = [group for group in strongly_connected(edges) if len(group) > 1]
    assert not cycles, cycles


@pytest.mark.parametrize("ring", [*sorted(CORE_RINGS), "pillars"])
def test_rings_import_only_inward(ring: str) -> None:
    offenders = []
    for module, targets in graph().items():
        top, level = ring_of(module)
        if module == "hygeia" or (top in CORE_RINGS) != (ring != "pillars") or \
                (ring != "pillars" and top != ring):
            continue
        for target in targets:
            target_top, target_level = ring_of(target)
            if target == "hygeia" or target_top == top:
                continue
            if target_level > level or (target_level == level):
                offenders.append(f"{module} imports {target}")
    assert not offenders, offenders


def test_outside_the_store_only_its_public_api_is_imported() -> None:
    """``from hygeia.store import audit_outbox`` is fine: the facade lists that module."""
    import hygeia.store as store

    public = {f"hygeia.store.{name}" for name in store.__all__}
    offenders = [f"{module} imports {target}"
                 for module, targets in graph().items() if not module.startswith("hygeia.store")
                 for target in targets if target.startswith("hygeia.store.") and
                 target not in public]
    assert not offenders, offenders


def test_the_store_facade_names_only_real_homes() -> None:
    import hygeia.store as store

    for name in store.__all__:
        assert getattr(store, name) is not None, name


@pytest.mark.parametrize("entry_point", WORKER_ENTRY_POINTS)
def test_worker_entry_points_stay_lean(entry_point: str) -> None:
    """A worker process starts fast and small: it never loads the service, auth or audit."""
    code = ("import sys, importlib; importlib.import_module(sys.argv[1]);"
            "print('\\n'.join(m for m in sys.modules if m.startswith('hygeia')))")
    loaded = subprocess.run([sys.executable, "-c", code, entry_point], check=True,
                            capture_output=True, text=True,
                            env={"PYTHONPATH": str(PACKAGE.parent)}).stdout.split()
    assert entry_point in loaded
    heavy = [m for m in loaded if m.startswith(HEAVY_FOR_WORKERS)]
    assert not heavy, heavy


def test_fhir_core_has_no_io_or_web_imports() -> None:
    forbidden = {"starlette", "uvicorn", "psycopg", "sqlite3", "httpx", "granian"}
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
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "hygeia" or top in sys.stdlib_module_names:
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    undeclared.add(f"{path.relative_to(PACKAGE)}: {name}")
    assert not undeclared, sorted(undeclared)
