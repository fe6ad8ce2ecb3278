"""The few spec invariants (constraint keys) checked beyond structure.

Only invariants that are cheap, common and need no FHIRPath engine live here:

- ``ext-1``: an Extension has either nested extensions or a ``value[x]``, not both
  and not neither (extensibility.html);
- ``dom-2``/``dom-4``/``dom-5`` and the id rule for contained resources
  (references.html#contained, domainresource.html).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hygeia.fhir.outcome import Issue
from hygeia.fhir.validation.paths import Location, child, issue


def check_extension(obj: dict[str, Any], location: Location, issues: list[Issue]) -> None:
    """ext-1: exactly one of ``extension`` and ``value[x]``."""
    has_value = False
    for key in obj:
        if type(key) is str and (key.startswith("value") or key.startswith("_value")):
            has_value = True
            break
    if "extension" in obj:
        if has_value:
            issues.append(
                issue(
                    "invariant",
                    "ext-1: an extension has either extensions or a value[x], not both",
                    location,
                )
            )
    elif not has_value:
        issues.append(
            issue(
                "invariant", "ext-1: an extension needs a value[x] or nested extensions", location
            )
        )


def check_contained(resource: dict[str, Any], location: Location, issues: list[Issue]) -> None:
    """Rules for a resource inside ``contained``: has an id, no nesting, no version or labels."""
    if "id" not in resource:
        issues.append(
            issue("required", "a contained resource must have an id", child(location, "id"))
        )
    if "contained" in resource:
        issues.append(
            issue(
                "invariant",
                "dom-2: a contained resource cannot contain resources",
                child(location, "contained"),
            )
        )
    meta = resource.get("meta")
    if type(meta) is not dict:
        return
    for name in ("versionId", "lastUpdated"):
        if name in meta:
            issues.append(
                issue(
                    "invariant",
                    f"dom-4: a contained resource cannot have meta.{name}",
                    child(child(location, "meta"), name),
                )
            )
    if "security" in meta:
        issues.append(
            issue(
                "invariant",
                "dom-5: a contained resource cannot have a security label",
                child(child(location, "meta"), "security"),
            )
        )


POST_CHECKS: dict[str, Callable[[dict[str, Any], Location, list[Issue]], None]] = {
    "Extension": check_extension,
}
