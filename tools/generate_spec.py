"""Generate hygeia's compact FHIR R4 package data from the official definitions.

The official R4 files (StructureDefinitions, ValueSets, SearchParameters and the
Patient CompartmentDefinition) weigh several megabytes and describe far more than
a server needs at run time.  This script boils them down once into three small
gzipped JSON files under ``src/hygeia/fhir/spec/_generated/`` so that the
installed package never reads ``../shared`` and the validator can compile its
rules in milliseconds.

Usage::

    python tools/generate_spec.py [--source ../shared/fhir-r4] \\
        [--out src/hygeia/fhir/spec/_generated]

Output formats (all gzipped, compact JSON):

``types.json.gz``
    ``{"version", "primitives", "types", "valueSets"}``.  ``primitives`` maps a
    primitive type to ``{"kind": string|number|integer|boolean, "regex", ...}``.
    ``types`` maps every resource, complex datatype and backbone element (named
    by its path, e.g. ``Patient.contact``) to ``{"kind", "elements"}``.  Each
    element is ``{"n": json name, "min"?: int (default 0), "max"?: int or "*"
    (default 1), "t"?: type, "x"?: {concrete json key: type} for choices,
    "vs"?: required value set url, "s"?: 1 when the element is part of the
    ``_summary`` view, "attr"?: 1 when the element is an XML attribute (no
    ``_name`` extension twin)}``.  A type is a type code, or
    ``[code, [target resource types]]`` for Reference/canonical.
``search_parameters.json.gz``
    A list of compact SearchParameter dicts, with the published errors listed in
    ``COMPONENT_ERRATA`` corrected (DocumentReference-relationship).
``compartment_patient.json.gz``
    ``{resource type: [search parameter codes]}``.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "fhir-r4"
DEFAULT_OUT = ROOT / "src" / "hygeia" / "fhir" / "spec" / "_generated"

SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_KINDS = {
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "number",
}
# datatypes.html states these ranges in prose only; the snapshots carry just integer's.
INTEGER_RANGES = {"positiveInt": 1, "unsignedInt": 0}
# Constraint profiles of datatypes that core elements point at (type.profile).
DATATYPE_PROFILES = ("SimpleQuantity", "MoneyQuantity")


def read_bundle(source: Path, name: str) -> list[dict[str, Any]]:
    """Return the resources of one gzipped Bundle from the official downloads."""
    with gzip.open(source / name, "rt", encoding="utf-8") as handle:
        bundle = json.load(handle)
    return [entry["resource"] for entry in bundle.get("entry", [])]


def write_json(path: Path, data: Any) -> int:
    """Write compact gzipped JSON (mtime 0 so reruns are byte-identical)."""
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
    with (
        path.open("wb") as handle,
        gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=9, mtime=0) as gz,
    ):
        gz.write(raw)
    return path.stat().st_size


# --------------------------------------------------------------------------- primitives


def primitive_table(sds: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Describe each primitive type: JSON kind, regex and numeric range."""
    prims = {name: sd for name, sd in sds.items() if sd["kind"] == "primitive-type"}
    table: dict[str, dict[str, Any]] = {}
    for name, sd in prims.items():
        value = _value_element(sd)
        entry: dict[str, Any] = {"kind": _json_kind(name, prims)}
        regex = _type_extension(value["type"][0], REGEX_EXT, "valueString")
        if regex:
            entry["regex"] = regex
        if "maxLength" in value:
            entry["maxLength"] = value["maxLength"]
        entry.update(_integer_range(name, prims))
        table[name] = entry
    return table


def _value_element(sd: dict[str, Any]) -> dict[str, Any]:
    """The ``<type>.value`` element that holds a primitive's regex and limits."""
    path = sd["type"] + ".value"
    return next(el for el in sd["snapshot"]["element"] if el["path"] == path)


def _json_kind(name: str, prims: dict[str, dict[str, Any]]) -> str:
    """JSON kind, inherited from the base primitive (positiveInt's own is mislabelled)."""
    base = prims[name].get("baseDefinition", "").rsplit("/", 1)[-1]
    if base in prims:
        return _json_kind(base, prims)
    code = _value_element(prims[name])["type"][0]["code"]
    return SYSTEM_KINDS.get(code, "string")


def _integer_range(name: str, prims: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Inclusive bounds of integer kinds, taken from integer.value's min/maxValue."""
    if _json_kind(name, prims) != "integer":
        return {}
    base = _value_element(prims["integer"])
    low = INTEGER_RANGES.get(name, base["minValueInteger"])
    return {"min": low, "max": base["maxValueInteger"]}


def _type_extension(type_ref: dict[str, Any], url: str, key: str) -> Any:
    for ext in type_ref.get("extension", []):
        if ext.get("url") == url:
            return ext.get(key)
    return None


# --------------------------------------------------------------------------- value sets


def split_terminology(resources: Iterable[dict[str, Any]]
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(ValueSets by url, CodeSystems by url) from the official terminology bundles."""
    value_sets: dict[str, dict[str, Any]] = {}
    code_systems: dict[str, dict[str, Any]] = {}
    for res in resources:
        if res["resourceType"] == "ValueSet":
            value_sets[res["url"]] = res
        elif res["resourceType"] == "CodeSystem":
            code_systems[res["url"]] = res
    return value_sets, code_systems


class ValueSets:
    """Expands required value sets from the official terminology bundle, or refuses."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.value_sets, self.code_systems = split_terminology(resources)
        self.expanded: dict[str, list[str]] = {}
        self.skipped: set[str] = set()

    def key_for(self, canonical: str) -> str | None:
        """Expand ``canonical`` (version suffix ignored); None when it is not enumerable."""
        url = canonical.split("|", 1)[0]
        if url in self.expanded:
            return url
        if url in self.skipped:
            return None
        codes = self._expand(url)
        if codes is None:
            self.skipped.add(url)
            return None
        self.expanded[url] = sorted(codes)
        return url

    def _expand(self, url: str) -> set[str] | None:
        value_set = self.value_sets.get(url)
        compose = (value_set or {}).get("compose")
        if not compose or compose.get("exclude"):
            return None
        codes: set[str] = set()
        for include in compose.get("include", []):
            part = self._include(include)
            if part is None:
                return None
            codes |= part
        return codes or None

    def _include(self, include: dict[str, Any]) -> set[str] | None:
        if "filter" in include or "valueSet" in include or "system" not in include:
            return None
        if "concept" in include:
            return {concept["code"] for concept in include["concept"]}
        system = self.code_systems.get(include["system"])
        if system is None or system.get("content") != "complete":
            return None
        return set(_concept_codes(system.get("concept", [])))


def _concept_codes(concepts: list[dict[str, Any]]) -> Iterable[str]:
    """All codes of a (possibly nested) CodeSystem concept tree."""
    for concept in concepts:
        yield concept["code"]
        yield from _concept_codes(concept.get("concept", []))


class TerminologyExpander:
    """Expands every value set that is enumerable from the spec, with code systems.

    Serves the ``:in`` / ``:not-in`` token modifiers: ``{url: [[system, code], ...]}``.
    Value sets defined by filters or by external code systems (SNOMED CT, LOINC...)
    are left out rather than guessed; the search engine reports them as unsupported.
    """

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.value_sets, systems = split_terminology(resources)
        self.code_systems = {url: cs for url, cs in systems.items()
                             if cs.get("content") == "complete"}
        self.expanded: dict[str, list[list[str]]] = {}

    def expand_all(self) -> dict[str, list[list[str]]]:
        for url in sorted(self.value_sets):
            codes = self._expand(url, set())
            if codes:
                self.expanded[url] = sorted([system, code] for system, code in codes)
        return self.expanded

    def _expand(self, url: str, seen: set[str]) -> set[tuple[str, str]] | None:
        compose = (self.value_sets.get(url.split("|", 1)[0]) or {}).get("compose")
        if not compose or url in seen:
            return None
        seen = seen | {url}
        codes: set[tuple[str, str]] = set()
        for include in compose.get("include", []):
            part = self._part(include, seen)
            if part is None:
                return None
            codes |= part
        for exclude in compose.get("exclude", []):
            part = self._part(exclude, seen)
            if part is None:
                return None
            codes -= part
        return codes

    def _part(self, include: dict[str, Any], seen: set[str]) -> set[tuple[str, str]] | None:
        if "filter" in include:
            return None
        codes: set[tuple[str, str]] | None = None
        if "system" in include:
            system = include["system"]
            if "concept" in include:
                codes = {(system, concept["code"]) for concept in include["concept"]}
            elif system in self.code_systems:
                codes = {(system, code) for code in
                         _concept_codes(self.code_systems[system].get("concept", []))}
            else:
                return None
        for nested in include.get("valueSet", []):
            part = self._expand(nested, seen)
            if part is None:
                return None
            codes = part if codes is None else codes & part
        return codes


# --------------------------------------------------------------------------- structures


class TypeCompiler:
    """Turns StructureDefinition snapshots into the compact ``types`` table."""

    def __init__(self, value_sets: ValueSets) -> None:
        self.value_sets = value_sets
        self.types: dict[str, dict[str, Any]] = {}

    def add(self, sd: dict[str, Any], kind: str, name: str | None = None) -> None:
        """Add one StructureDefinition and its backbone elements under ``name``."""
        elements = sd["snapshot"]["element"]
        by_parent: dict[str, list[dict[str, Any]]] = {}
        for element in elements[1:]:
            parent = element["path"].rsplit(".", 1)[0]
            by_parent.setdefault(parent, []).append(element)
        root = elements[0]["path"]
        context = _Context(root=root, alias=name or root, kind=kind, children=by_parent)
        self._add_type(context, root, context.alias, kind)
        if kind == "resource":
            self.types[context.alias]["base"] = sd["baseDefinition"].rsplit("/", 1)[-1]

    def _add_type(self, ctx: _Context, path: str, name: str, kind: str) -> None:
        compiled = [self._element(ctx, el) for el in ctx.children.get(path, [])]
        self.types[name] = {"kind": kind, "elements": [el for el in compiled if el]}

    def _element(self, ctx: _Context, element: dict[str, Any]) -> dict[str, Any] | None:
        if element.get("max") == "0":
            return None  # prohibited by a constraint profile (SimpleQuantity.comparator)
        if element.get("sliceName"):
            raise ValueError(f"unexpected slice in core snapshot: {element['id']}")
        path = element["path"]
        json_name = path.rsplit(".", 1)[1]
        out: dict[str, Any] = {"n": json_name.removesuffix("[x]")}
        if element["min"]:
            out["min"] = element["min"]
        if element["max"] != "1":
            out["max"] = element["max"] if element["max"] == "*" else int(element["max"])
        if "xmlAttr" in element.get("representation", []):
            out["attr"] = 1
        if element.get("isSummary"):
            out["s"] = 1
        if json_name.endswith("[x]"):
            out["x"] = {
                out["n"] + _upper_first(ref["code"]): self._type_ref(ctx, element, ref)
                for ref in element["type"]
            }
        else:
            out["t"] = self._single_type(ctx, element)
        self._binding(element, out)
        return out

    def _single_type(self, ctx: _Context, element: dict[str, Any]) -> Any:
        path = element["path"]
        if "contentReference" in element:
            return ctx.rename(element["contentReference"].lstrip("#"))
        if path in ctx.children:
            name = ctx.rename(path)
            self._add_type(ctx, path, name, "backbone")
            return name
        if path == ctx.root + ".id" and ctx.kind == "resource":
            return "id"  # Resource.id is of type id (resource.html); the snapshot says string
        (ref,) = element["type"]
        return self._type_ref(ctx, element, ref)

    def _type_ref(self, ctx: _Context, element: dict[str, Any], ref: dict[str, Any]) -> Any:
        code = ref["code"]
        if code.startswith("http://hl7.org/fhirpath/"):
            code = _type_extension(ref, FHIR_TYPE_EXT, "valueUrl") or "string"
        for profile in ref.get("profile", []):
            short = profile.rsplit("/", 1)[-1]
            if short in DATATYPE_PROFILES:
                code = short
        targets = sorted({p.rsplit("/", 1)[-1] for p in ref.get("targetProfile", [])})
        if targets and targets != ["Resource"]:
            return [code, targets]
        return code

    def _binding(self, element: dict[str, Any], out: dict[str, Any]) -> None:
        binding = element.get("binding") or {}
        if out.get("t") != "code" or binding.get("strength") != "required":
            return
        key = self.value_sets.key_for(binding.get("valueSet", ""))
        if key:
            out["vs"] = key


class _Context:
    """Where one StructureDefinition's elements live while it is compiled."""

    def __init__(
        self, root: str, alias: str, kind: str, children: dict[str, list[dict[str, Any]]]
    ) -> None:
        self.root = root
        self.alias = alias
        self.kind = kind
        self.children = children

    def rename(self, path: str) -> str:
        """Name a backbone path after the compiled type (SimpleQuantity, not Quantity)."""
        return self.alias + path[len(self.root) :]


def _upper_first(code: str) -> str:
    return code[:1].upper() + code[1:]


def structure_definitions(source: Path) -> dict[str, dict[str, Any]]:
    """StructureDefinitions of types and resources, keyed by name."""
    resources = read_bundle(source, "profiles-types.json.gz")
    resources += read_bundle(source, "profiles-resources.json.gz")
    return {
        res["name"]: res
        for res in resources
        if res["resourceType"] == "StructureDefinition" and res["kind"] != "logical"
    }


def type_table(source: Path) -> dict[str, Any]:
    """Build the whole ``types.json`` document."""
    sds = structure_definitions(source)
    value_sets = ValueSets(read_bundle(source, "valuesets.json.gz"))
    compiler = TypeCompiler(value_sets)
    for name, sd in sorted(sds.items()):
        kind = _structure_kind(name, sd)
        if kind:
            compiler.add(sd, kind, name)
    return {
        "version": "4.0.1",
        "primitives": primitive_table(sds),
        "types": compiler.types,
        "valueSets": value_sets.expanded,
        "skippedValueSets": sorted(value_sets.skipped),
    }


def _structure_kind(name: str, sd: dict[str, Any]) -> str | None:
    """Which table a StructureDefinition goes in (None: not shipped)."""
    if sd["kind"] == "resource" and not sd.get("abstract"):
        return "resource"
    if sd["kind"] == "complex-type" and name == "Element":
        return "complex"  # the shape of a primitive's ``_name`` extension object
    if sd["kind"] == "complex-type" and not sd.get("abstract"):
        if sd.get("derivation") == "constraint" and name not in DATATYPE_PROFILES:
            return None
        return "complex"
    return None


# --------------------------------------------------------------------------- search


def search_parameters(source: Path) -> list[dict[str, Any]]:
    """Compact SearchParameters, component definitions resolved to codes."""
    params = [
        res
        for res in read_bundle(source, "search-parameters.json.gz")
        if res["resourceType"] == "SearchParameter"
    ]
    code_by_url = {param["url"]: param["code"] for param in params}
    return [_compact_parameter(param, code_by_url) for param in params]


_SP = "http://hl7.org/fhir/SearchParameter/"
# Errata in the official R4 (4.0.1) SearchParameters: (parameter url, component definition)
# -> (expression as published, corrected expression).  DocumentReference-relationship's
# two component expressions are swapped: the component defined by
# DocumentReference-relatesto (type reference, DocumentReference.relatesTo.target) is given
# "code", and the one defined by DocumentReference-relation (type token,
# DocumentReference.relatesTo.code) is given "target".  As published, the reference
# component would read a code and the token component a Reference, so the composite could
# never be indexed or matched.
COMPONENT_ERRATA = {
    (_SP + "DocumentReference-relationship", _SP + "DocumentReference-relatesto"):
        ("code", "target"),
    (_SP + "DocumentReference-relationship", _SP + "DocumentReference-relation"):
        ("target", "code"),
}


def _component_expression(param_url: str, component: dict[str, Any]) -> str:
    """The component's expression, corrected when :data:`COMPONENT_ERRATA` lists it.

    An erratum whose published expression no longer matches fails loudly, so a
    corrected source is noticed instead of being "fixed" back into a bug.
    """
    expression: str = component["expression"]
    erratum = COMPONENT_ERRATA.get((param_url, component["definition"]))
    if erratum is None:
        return expression
    published, corrected = erratum
    if expression != published:
        raise SystemExit(f"erratum for {param_url} no longer applies: component "
                         f"{component['definition']} has expression {expression!r}")
    return corrected


def _compact_parameter(param: dict[str, Any], code_by_url: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": param["code"],
        "base": param["base"],
        "type": param["type"],
        "url": param["url"],
    }
    for key in ("expression", "target", "modifier", "comparator", "multipleOr", "multipleAnd"):
        if key in param:
            out[key] = param[key]
    if "component" in param:
        out["component"] = [
            {
                "code": code_by_url.get(comp["definition"], comp["definition"]),
                "definition": comp["definition"],
                "expression": _component_expression(param["url"], comp),
            }
            for comp in param["component"]
        ]
    return out


def patient_compartment(source: Path) -> dict[str, list[str]]:
    """Resource type -> search parameter codes that place it in a Patient compartment."""
    with gzip.open(source / "compartmentdefinition-patient.json.gz", "rt") as handle:
        definition = json.load(handle)
    return {item["code"]: item["param"] for item in definition["resource"] if item.get("param")}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    types = type_table(args.source)
    terminology = [
        *read_bundle(args.source, "valuesets.json.gz"),
        *read_bundle(args.source, "v3-codesystems.json.gz"),
        *read_bundle(args.source, "v2-tables.json.gz"),
    ]
    outputs = {
        "types.json.gz": types,
        "value_set_expansions.json.gz": TerminologyExpander(terminology).expand_all(),
        "search_parameters.json.gz": search_parameters(args.source),
        "compartment_patient.json.gz": patient_compartment(args.source),
    }
    total = 0
    for name, data in outputs.items():
        size = write_json(args.out / name, data)
        total += size
        print(f"wrote {name}: {size:,} bytes")
    print(
        f"done: {len(types['types'])} types, {len(types['primitives'])} primitives, "
        f"{len(types['valueSets'])} value sets, {len(outputs['search_parameters.json.gz'])} "
        f"search parameters, {total:,} bytes total"
    )


if __name__ == "__main__":
    main()
