"""Property test: database search returns exactly what the in-memory matcher accepts.

Queries are generated from values really present in a loaded Synthea data set
(so most of them match something), with random prefixes, modifiers, chains,
reverse chains and composites, and run on both backends.  Synthea has no
ranges, so a seeded set of resources with Range values, Quantity comparators
and SampledData is loaded too, and a quarter of the queries target it.  The matcher is an
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
         "Immunization", "MedicationRequest", "DiagnosticReport", "RiskAssessment")
RANGED = "ranged-"  # id prefix of the synthetic resources with ranges
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@pytest.fixture
def loaded(service: FhirService) -> tuple[FhirService, MatchContext, dict[str, IndexRows]]:
    for name in ("001", "006"):
        call(service, "POST", "", synthea_bundle(name))
    call(service, "POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource, "request": {"method": "PUT",
                                           "url": f"{resource['resourceType']}/{resource['id']}"}}
        for resource in ranged_resources(random.Random(7))]})
    context = MatchContext(registry=service.registry)
    with service.reader() as session:
        for kind in TYPES:
            page = session.search(parse_query(kind, [("_count", "1000")]))
            for stored in page.matches:
                context.add(orjson.loads(stored.content or b"{}"))
    rows = {f"{k}/{i}": index_resource(r, service.registry, complete=True)
            for (k, i), r in context.resources.items()}
    return service, context, rows


def ranged_resources(rng: random.Random) -> list[dict[str, Any]]:
    """Conditions, Observations and RiskAssessments whose values are ranges."""
    def number() -> float:
        return round(rng.uniform(0, 100), rng.randrange(3))

    def quantity(**extra: Any) -> dict[str, Any]:
        units = rng.choice(({"system": "http://unitsofmeasure.org", "code": "a"}, {}))
        return {"value": number(), **units, **extra}

    def interval() -> dict[str, Any]:
        low, high = sorted((number(), number()))
        ends = {"low": quantity(value=low), "high": quantity(value=high)}
        ends["low"].update({k: v for k, v in ends["high"].items() if k != "value"})
        dropped = rng.choice(("low", "high", "neither"))  # an open end, or none
        return {k: v for k, v in ends.items() if k != dropped}

    def comparator() -> dict[str, Any]:
        return quantity(**({"comparator": rng.choice(("<", "<=", ">=", ">"))}
                           if rng.random() < 0.7 else {}))

    resources: list[dict[str, Any]] = []
    for n in range(12):
        onset = {"onsetRange": interval()} if n % 3 else {"onsetAge": comparator()}
        resources.append({"resourceType": "Condition", "id": f"{RANGED}c{n}",
                          "subject": {"reference": "Patient/x"}, **onset,
                          "abatementRange": interval()})
        sampled = {"origin": quantity(value=number()), "period": 1, "dimensions": 1,
                   "factor": rng.choice((1, 0.5, -2)),
                   "data": " ".join(rng.choice(("1", "2.5", "-3", "E", "L", "U", "7"))
                                    for _ in range(rng.randint(1, 5)))}
        value = {"valueSampledData": sampled} if n % 4 == 0 else {"valueQuantity": comparator()}
        resources.append({"resourceType": "Observation", "id": f"{RANGED}o{n}",
                          "status": "final", "code": {"coding": [{"system": "urn:x",
                                                                  "code": f"k{n % 3}"}]},
                          **value, "component": [{"code": {"coding": [{"code": "c"}]},
                                                  "valueQuantity": comparator()}]})
        probability = {"probabilityRange": interval()} if n % 2 else \
            {"probabilityDecimal": number()}
        resources.append({"resourceType": "RiskAssessment", "id": f"{RANGED}r{n}",
                          "status": "final", "subject": {"reference": "Patient/x"},
                          "prediction": [probability]})
    return resources


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


def _near(rng: random.Random, low: float, high: float) -> str:
    """A search number near one finite end of a stored range, at a random precision."""
    value = rng.choice([end for end in (low, high) if abs(end) < 1e300] or [0.0])
    return f"{value * rng.choice((1, 1.05, 0.9)):.{rng.randrange(3)}f}"


def _quantity(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    if not rows.quantities:
        return None
    code, low, high, system, unit_code, _ = rng.choice(rows.quantities)
    units = f"|{system}|{unit_code}" if rng.random() < 0.5 and system and unit_code else ""
    return code, rng.choice(PREFIXES) + _near(rng, low, high) + units


def _number(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    if not rows.numbers:
        return None
    code, low, high = rng.choice(rows.numbers)
    return code, rng.choice(PREFIXES) + _near(rng, low, high)


def _composite(rng: random.Random, rows: IndexRows) -> tuple[str, str] | None:
    """``code$[prefix]quantity`` from a composite group whose second component is a quantity."""
    groups: dict[tuple[str, int], dict[int, list[tuple[Any, ...]]]] = {}
    for code, group, component, values in rows.composites:
        groups.setdefault((code, group), {}).setdefault(component, []).append(values)
    usable = [(key, parts) for key, parts in sorted(groups.items())
              if len(parts) == 2 and len(parts[1][0]) == 5 and parts[0][0][1]]
    if not usable:
        return None
    (code, _), parts = rng.choice(usable)
    system, token = rng.choice(parts[0])
    low, high = rng.choice(parts[1])[:2]
    prefix = f"{system}|" if system else ""
    return code, f"{prefix}{token}${rng.choice(PREFIXES)}{_near(rng, low, high)}"


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


BUILDERS = (_token, _string, _date, _quantity, _number, _composite, _reference, _text,
            _missing)
RANGE_BUILDERS = (_quantity, _number, _composite)


def random_query(rng: random.Random, context: MatchContext, rows: dict[str, IndexRows]
                 ) -> tuple[str, list[tuple[str, str]]]:
    ranged = rng.random() < 0.25
    key = rng.choice(sorted(k for k in rows if ranged == (RANGED in k)))
    kind = key.split("/")[0]
    params: list[tuple[str, str]] = []
    for _ in range(rng.randint(1, 2)):
        roll = rng.random()
        if ranged:  # the first range builder that applies to this resource
            builders = rng.sample(RANGE_BUILDERS, len(RANGE_BUILDERS))
            found = next(filter(None, (build(rng, rows[key]) for build in builders)), None)
        elif roll < 0.1:
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
