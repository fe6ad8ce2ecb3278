"""The shape of ``Reference.reference`` (references.html).

A literal reference is one of:

- relative ``Type/id`` or ``Type/id/_history/vid`` (Type a known resource type,
  and one the element may point at);
- a conditional ``Type?query`` (only meaningful inside a transaction Bundle,
  where the server resolves it);
- ``#id`` pointing at a contained resource, or ``#`` for the container;
- ``urn:uuid:<uuid>`` or ``urn:oid:<oid>`` (Bundle-local identities);
- an absolute URL (``scheme:...``) with no whitespace.

>>> reference_problem("Patient/123", frozenset({"Patient", "Group"}))
>>> reference_problem("Observation/1", frozenset({"Patient"}))[0]
'invalid'
"""

from __future__ import annotations

import re

from hygeia.fhir import spec
from hygeia.fhir.validation.primitives import KnownGood, Problem, shown

_ID = r"[A-Za-z0-9\-\.]{1,64}"
_RELATIVE = re.compile(rf"([A-Z][A-Za-z]+)/{_ID}(?:/_history/{_ID})?", re.ASCII).fullmatch
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]+)\?\S*", re.ASCII).fullmatch
_LOCAL = re.compile(rf"#(?:{_ID})?", re.ASCII).fullmatch
# Hex digits in either case: a reference must be able to match a Bundle fullUrl,
# which is a plain uri (the lower-case rule belongs to the uuid datatype only).
_UUID = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    re.ASCII,
).fullmatch
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+", re.ASCII).fullmatch
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+", re.ASCII).fullmatch


def _uuid_reference_problem(reference: str) -> Problem | None:
    return None if _UUID(reference) else ("value", "not a urn:uuid: reference")


# Bundles repeat the same urn:uuid: references (the patient, the encounter) in
# every entry; remembering the valid ones skips the regex.  They need no target
# check: a urn:uuid: says nothing about the type it points at.
KNOWN_UUID_REFERENCES = KnownGood(_uuid_reference_problem)


class KnownReferences(set[tuple[frozenset[str] | None, str]]):
    """(allowed target types, literal reference) pairs already found valid.

    Device and MLLP traffic names the same ``Patient/x`` and ``Device/y`` in every
    message; a set lookup replaces the regexes and the target test.  One set for
    every element, bounded as :class:`KnownGood` is (short references only, emptied
    when full).  Callers never ask it about local ``#id`` references, whose validity
    depends on the container.
    """

    __slots__ = ()
    LIMIT = KnownGood.LIMIT
    LONGEST = KnownGood.LONGEST

    def learn(self, targets: frozenset[str] | None, reference: str) -> bool:
        """Check a pair not seen before; remember it if valid."""
        if reference_problem(reference, targets) is not None:
            return False
        if len(reference) <= self.LONGEST:
            if len(self) >= self.LIMIT:
                self.clear()
            self.add((targets, reference))
        return True


KNOWN_REFERENCES = KnownReferences()


def reference_problem(reference: str, targets: frozenset[str] | None) -> Problem | None:
    """Why ``reference`` is not a valid literal reference here, or None.

    ``targets`` are the resource types the element allows (None: any).
    """
    if reference.startswith("urn:"):
        return _urn_problem(reference)
    if reference.startswith("#"):
        if _LOCAL(reference):
            return None
        return "value", f"{shown(reference)} is not a valid local reference (#id)"
    match = _RELATIVE(reference) or _CONDITIONAL(reference)
    if match:
        return _target_problem(match.group(1), reference, targets)
    if _ABSOLUTE(reference):
        return None
    return "value", (
        f"{shown(reference)} is not a valid reference: expected Type/id, "
        "an absolute URL, #id, urn:uuid: or urn:oid:"
    )


def _urn_problem(reference: str) -> Problem | None:
    if _UUID(reference) or _OID(reference):
        return None
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        return "value", f"{shown(reference)} is not a valid urn:uuid: or urn:oid: reference"
    return None if _ABSOLUTE(reference) else ("value", f"{shown(reference)} is not a valid URN")


def _target_problem(
    type_name: str, reference: str, targets: frozenset[str] | None
) -> Problem | None:
    if not spec.is_resource_type(type_name):
        return "value", f"{shown(reference)} refers to unknown resource type {type_name!r}"
    if targets is not None and type_name not in targets:
        allowed = ", ".join(sorted(targets))
        return "invalid", f"{shown(reference)} may not refer to a {type_name} (allowed: {allowed})"
    return None
