"""Property test: database search returns exactly what the in-memory matcher accepts.

Queries are generated from values really present in a loaded Synthea data set
(so most of them match something), with random prefixes, modifiers, chains,
reverse chains and composites, and run on both backends.  The matcher is an
independent implementation of the same semantics over the same index rows, so
any disagreement is a bug in one of them.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hygeia.fhir.datetime import format_instant
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.matcher import MatchContext, matches
from hygeia.fhir.search.query import parse_query
from hygeia.fhir.search.rows import IndexRows
from hygeia.server import FhirService
from tests.helpers import body, call, synthea_bundle

TYPES = ("Patient", "Observation", "Encounter", "Condition", "Procedure", "Claim",
         "Immunization", "MedicationRequest", "DiagnosticReport")
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@pytest.fixture
def loaded(service: FhirService) -> tuple[FhirService, MatchContext, dict[str, IndexRows]]:
    for name in ("001", "006"):
        call(service, "POST", "", synthea_bundle(name))
    context = MatchContext(registry=service.registry)
    with service.reader() as session:
        for kind in TYPES:
            page = session.search(parse_query(kind, [("_count", "1000")]))
            for stored in page.matches:
                context.add(orjson.loads(stored.content or b"{}"))
    rows = {f"{k}/{i}": index_resource(r, service.registry, complete=True)
            for (k, i), r in context.resources.items()}
    return service, context, rows


def _token(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    tokens = [r for r in rows.tokens if ":" not in r[0] and r[2]]
    if not tokens:
        return None
    code, system, value = rng.choice(tokens)
    form = rng.randrange(4)
    text = (f"{system}|{value}" if form == 0 and system else f"|{value}" if form == 1
            else value)
    return (f"{code}:not" if form == 3 else code), text


def _string(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    if not rows.strings:
        return None
    code, norm, exact = rng.choice(rows.strings)
    form = rng.randrange(3)
    if form == 1:
        return f"{code}:exact", exact
    start = rng.randrange(len(norm))
    piece = norm[start:start + rng.randint(1, 5)] if form == 2 else norm[:rng.randint(1, 6)]
    return (f"{code}:contains" if form == 2 else code), piece.replace(",", "\\,")


def _date(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    if not rows.dates:
        return None
    code, low, _ = rng.choice(rows.dates)
    text = format_instant(low + rng.choice((0, 86_400_000_000 * 40, -86_400_000_000 * 400)))
    cut = rng.choice((4, 7, 10, 19))
    return code, rng.choice(PREFIXES) + text[:cut] + ("Z" if cut == 19 else "")


def _quantity(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    if not rows.quantities:
        return None
    code, value, system, unit_code, _ = rng.choice(rows.quantities)
    shown = f"{value * rng.choice((1, 1.05, 0.9)):.{rng.randrange(3)}f}"
    units = f"|{system}|{unit_code}" if rng.random() < 0.5 and system and unit_code else ""
    return code, rng.choice(PREFIXES) + shown + units


def _reference(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    refs = [r for r in rows.references if r[1] and r[2]]
    if not refs:
        return None
    code, kind, id, _, _ = rng.choice(refs)
    return code, rng.choice((f"{kind}/{id}", id))


def _chain(rng: random.Random, rows: IndexRows, context: MatchContext) -> tuple[str, str] | None:
    refs = [r for r in rows.references if r[1] == "Patient" and r[2]]
    if not refs:
        return None
    code, _, id, _, _ = rng.choice(refs)
    patient = context.resources.get(("Patient", id), {})
    family = ((patient.get("name") or [{}])[0].get("family") or "x")[:3]
    return f"{code}:Patient.family", family


def _text(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    if not rows.token_texts:
        return None
    code, text = rng.choice(rows.token_texts)
    return f"{code}:text", text[:rng.randint(1, 8)].replace(",", "\\,")


def _missing(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    present = [row[0] for row in (*rows.tokens, *rows.references, *rows.dates,
                                  *rows.quantities, *rows.strings) if ":" not in row[0]]
    if not present:
        return None
    return f"{rng.choice(present)}:missing", rng.choice(("true", "false"))


def _composite(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    """code-value-quantity style: a token component and a quantity component of one group."""
    groups: dict[tuple[str, int], dict[int, tuple[Any, ...]]] = {}
    for code, group, component, values in rows.composites:
        groups.setdefault((code, group), {})[component] = values
    usable = [(code, parts) for (code, _), parts in sorted(groups.items())
              if code.endswith("value-quantity") and len(parts[0]) == 2 and parts[0][1]
              and isinstance(parts[1][0], float | int)]
    if not usable:
        return None
    code, parts = rng.choice(usable)
    (system, token), (value, *_) = parts[0], parts[1]
    return code, f"{system}|{token}${rng.choice(PREFIXES)}{value * rng.choice((1, 1.1)):.1f}"


BUILDERS = (_token, _string, _date, _quantity, _reference, _text, _missing, _composite)


def random_query(rng: random.Random, context: MatchContext, rows: dict[str, IndexRows]
                 ) -> tuple[str, list[tuple[str, str]]]:
    key = rng.choice(sorted(rows))
    kind = key.split("/")[0]
    params: list[tuple[str, str]] = []
    for _ in range(rng.randint(1, 2)):
        roll = rng.random()
        if roll < 0.1:
            found = _chain(rng, rows[key], context)
        elif roll < 0.15 and kind == "Patient":
            observation = next((r for k, r in rows.items() if k.startswith("Observation/")), None)
            token = _token(rng, observation) if observation else None
            found = (f"_has:Observation:patient:{token[0]}", token[1]) if token else None
        else:
            found = rng.choice(BUILDERS)(rng, rows[key])
        if found:
            params.append(found)
    return kind, params


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_database_search_equals_matcher(loaded: tuple[FhirService, MatchContext,
                                                      dict[str, IndexRows]], seed: int) -> None:
    service, context, rows = loaded
    kind, params = random_query(random.Random(seed), context, rows)
    if not params:
        return
    query = parse_query(kind, params, registry=service.registry)
    expected = sorted(i for (k, i), resource in context.resources.items()
                      if k == kind and matches(query, resource, context))
    path = kind + "?" + "&".join(f"{n}={_escape(v)}" for n, v in params) + "&_count=1000"
    bundle: dict[str, Any] = body(call(service, "GET", path))
    found = sorted(e["resource"]["id"] for e in bundle.get("entry", [])
                   if e["search"]["mode"] == "match")
    assert found == expected, f"{path}: database {len(found)} vs matcher {len(expected)}"


def _escape(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="|:\\,$")
