"""Benchmark index extraction against fhirpathpy evaluating the same expressions, same run.

Corpus: every resource of every Synthea bundle in ``--data`` (default
``../shared/data/synthea-r4``), with ``urn:uuid:`` references rewritten to
``Type/id`` as a transaction stores them.

- hygeia: ``extract_index`` over the whole corpus.  Plans are compiled first
  (on empty resources, so no value memo is warmed).  "cold" passes start with
  the date, reference and text memos emptied (``clear_memos``), as for new
  data; "warm" passes keep them.  Passes alternate and the best of each kind
  is reported, so a burst of load on a shared machine does not decide the
  result; cold is the headline.
- baseline: fhirpathpy, every indexed expression of the resource's type
  compiled once with ``fhirpathpy.compile`` (R4 model) and evaluated per
  resource (composites: the root expression, then each component on each
  root), on an evenly spread ``--sample``.  It only *evaluates*; it does not
  normalise values into rows, so it is a lower bound on the cost of a
  fhirpathpy-based indexer.  fhirpathpy has no ``resolve()``, so
  ``where(resolve() is X)`` is rewritten to
  ``where(reference.startsWith('X/'))``, which is what it means for stored data.

Prints resources/s and rows (or values) per resource for both, and the ratio.
To profile: ``python -m pyinstrument benchmarks/extract.py --baseline-sample 0``
(profile with the profiler, but quote numbers measured without it).

Usage::

    python benchmarks/extract.py [--data DIR] [--repeat N] [--baseline-sample N]
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from hygeia.fhir.search.extract import clear_memos, extract_index
from hygeia.fhir.search.parameters import default_registry
from hygeia.fhir.search.rows import IndexRows

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "synthea-r4"
_URN = re.compile(rb'"(urn:uuid:[0-9a-fA-F-]+)"')
_RESOLVE = re.compile(r"where\(resolve\(\) is (\w+)\)")


def load_corpus(folder: Path) -> list[dict[str, Any]]:
    """Every resource of every bundle, references rewritten as the server stores them."""
    resources: list[dict[str, Any]] = []
    files = sorted(folder.glob("*.json.gz")) + sorted(folder.glob("*.json"))
    for path in files:
        raw = path.read_bytes()
        bundle = orjson.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        resources.extend(stored_form(bundle))
    print(f"loaded {len(resources):,} resources from {len(files)} bundles in {folder}")
    return resources


def stored_form(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's resources with ``urn:uuid:`` references resolved to ``Type/id``."""
    entries = [entry for entry in bundle.get("entry", []) if "resource" in entry]
    targets = {
        entry.get("fullUrl"): f'"{entry["resource"]["resourceType"]}/'
        f'{entry["resource"].get("id")}"'.encode()
        for entry in entries
    }

    def resolve(match: re.Match[bytes]) -> bytes:
        return targets.get(match[1].decode(), match[0])

    resources: list[dict[str, Any]] = orjson.loads(
        _URN.sub(resolve, orjson.dumps([entry["resource"] for entry in entries]))
    )
    return resources


def row_count(rows: IndexRows) -> int:
    return (
        len(rows.strings)
        + len(rows.tokens)
        + len(rows.token_texts)
        + len(rows.references)
        + len(rows.dates)
        + len(rows.numbers)
        + len(rows.quantities)
        + len(rows.uris)
        + len(rows.composites)
    )


def ours_pass(corpus: list[dict[str, Any]], *, cold: bool) -> tuple[float, int]:
    if cold:
        clear_memos()
    start = time.perf_counter()
    rows = sum(row_count(extract_index(resource)) for resource in corpus)
    return time.perf_counter() - start, rows


# resource type -> [(root evaluator, [component evaluators])]
Compiled = dict[str, list[tuple[Callable[..., list[Any]], list[Callable[..., list[Any]]]]]]


def fhirpathpy_expressions(types: set[str]) -> Compiled:
    """Every indexed expression of each type, compiled once with fhirpathpy."""
    import fhirpathpy
    from fhirpathpy.models import models

    def compile_one(text: str) -> Callable[..., list[Any]]:
        rewritten = _RESOLVE.sub(r"where(reference.startsWith('\1/'))", text)
        return fhirpathpy.compile(rewritten, models["r4"])

    registry = default_registry()
    compiled: Compiled = {}
    for kind in sorted(types):
        compiled[kind] = [
            (
                compile_one(param.expression or ""),
                [compile_one(component.expression) for component in param.components],
            )
            for param in registry.for_type(kind).values()
            if param.indexed
        ]
    return compiled


def baseline_pass(corpus: list[dict[str, Any]], compiled: Compiled) -> tuple[float, int, int]:
    """Seconds, values found and evaluation errors for one fhirpathpy pass.

    fhirpathpy follows FHIRPath strictly and raises on ``(X as T)`` when X has
    several items (``Claim.item.serviced``...); such an evaluation counts as an
    error and yields no value, where indexing treats ``as`` as a filter.
    """
    start = time.perf_counter()
    values = errors = 0
    for resource in corpus:
        context = {"resource": resource}
        for root, components in compiled[resource["resourceType"]]:
            found = _evaluate(root, resource, context)
            if found is None:
                errors += 1
                continue
            values += len(found)
            for node in found if components else ():
                for component in components:
                    result = _evaluate(component, node, context)
                    errors += result is None
                    values += len(result or ())
    return time.perf_counter() - start, values, errors


def _evaluate(
    compiled: Callable[..., list[Any]], node: Any, context: dict[str, Any]
) -> list[Any] | None:
    try:
        return compiled(node, context)
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=1000,
        help="resources for the fhirpathpy baseline (0 skips it)",
    )
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data)
    size = len(corpus)
    types = {resource["resourceType"] for resource in corpus}
    started = time.perf_counter()
    for kind in types:  # compile every plan without warming any value memo
        extract_index({"resourceType": kind})
    print(
        f"compiled extraction plans for {len(types)} types in {time.perf_counter() - started:.3f}s"
    )
    cold_runs, warm_runs = [], []
    for _ in range(args.repeat):
        cold_runs.append(ours_pass(corpus, cold=True))
        warm_runs.append(ours_pass(corpus, cold=False))
    cold, rows = min(cold_runs)
    warm = min(seconds for seconds, _ in warm_runs)
    print(
        f"\n== extract_index: {size:,} resources, best of {args.repeat} cold and "
        f"{args.repeat} warm passes =="
    )
    print(
        f"  cold {size / cold:,.0f} res/s, warm {size / warm:,.0f} res/s, "
        f"{rows / size:.1f} rows/resource"
    )
    if args.baseline_sample <= 0:
        return 0
    step = max(1, size // args.baseline_sample)
    sample = corpus[::step][: args.baseline_sample]
    try:
        compiled = fhirpathpy_expressions(types)
    except ImportError:
        print("fhirpathpy is not installed: pip install fhirpathpy", file=sys.stderr)
        return 2
    seconds, values, errors = baseline_pass(sample, compiled)
    ours_sample = min(ours_pass(sample, cold=True)[0] for _ in range(3))
    theirs_rate = len(sample) / seconds
    ours_rate = len(sample) / ours_sample
    print(f"\n== fhirpathpy baseline: {len(sample):,} resources (every {step}th), one pass ==")
    print(
        f"  fhirpathpy {theirs_rate:,.0f} res/s, {values / len(sample):.1f} values/resource "
        f"(evaluation only, no normalisation; {errors:,} evaluations raised)"
    )
    print(f"  hygeia     {ours_rate:,.0f} res/s on the same sample (cold, best of 3)")
    print(
        f"\nsummary: extract_index {size / cold:,.0f} res/s cold, {size / warm:,.0f} warm, "
        f"{rows / size:.1f} rows/resource; {ours_rate / theirs_rate:.0f}x fhirpathpy "
        f"on the same sample"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
