"""The few spec invariants (constraint keys) checked beyond structure.

Only invariants that are cheap, common and need no FHIRPath engine live here:

- ``ext-1``: an Extension has either nested extensions or a ``value[x]``, not both
  and not neither (extensibility.html).

The contained-resource invariants (dom-2..5, ref-1) live in :mod:`.contained`;
``ele-1`` (no empty elements) is enforced by the walker itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hygeia.fhir.outcome import Issue
from hygeia.fhir.validation.paths import Location, issue


def check_extension(
    obj: dict[str, Any], chosen: Any, location: Location, issues: list[Issue]
) -> None:
    """ext-1: exactly one of ``extension`` and ``value[x]``.

    ``chosen`` is what the walker saw of choice elements; value[x] is
    Extension's only one, so any choice seen means a value is present.
    """
    has_value = chosen is not None
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


# Checks run after an object of the named type has been walked, given the object,
# the choice elements seen (None, a (group, variant) tuple or a dict) and where it is.
PostCheck = Callable[[dict[str, Any], Any, Location, list[Issue]], None]
POST_CHECKS: dict[str, PostCheck] = {
    "Extension": check_extension,
}
