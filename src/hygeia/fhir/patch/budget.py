"""How much a patch may build: the size of its result and the work to reach it.

A patch is small but its result need not be: each JSON Patch ``copy`` of
``/name`` into ``/name/-`` doubles the names, so 25 such operations (1 KB)
ask for a resource of gigabytes.  Building it first and measuring afterwards
is exactly the attack, so every operation is priced *before* it runs, from
the serialized size of what it would insert (``len(orjson.dumps(value))``,
with a few bytes for the key and separators), and refused as soon as:

* the patched resource would exceed ``max_bytes`` (the server passes its
  request body limit: a patch may build no larger a resource than a client
  could send whole with PUT); or
* the patch would have written more than ``max_bytes`` in all (values it
  adds, replaces or copies; removing does not give any back), which bounds
  the work of patches that copy a large element and remove it again; or
* it has more than ``max_operations`` operations, or the FHIRPath Patch
  paths visit more than ``max_path_visits`` elements in all (each element a
  ``where()`` is evaluated on counts: fhirpathpy takes about 50 us each).

Sizes are estimates of the compact JSON; they never undercount what a value
adds, which is what matters for the bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.fhir.outcome import Unprocessable

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the server's default request body limit
DEFAULT_MAX_OPERATIONS = 1000
MAX_PATH_VISITS = 50_000  # about 2.5 s of where() evaluation at most


@dataclass(frozen=True, slots=True)
class PatchLimits:
    """The bounds of one patch (JSON Patch or FHIRPath Patch)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_operations: int = DEFAULT_MAX_OPERATIONS
    max_path_visits: int = MAX_PATH_VISITS


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what it costs to store and send).

    A value that cannot be priced is refused, never counted as free: orjson
    serializes at most 255 levels deep, far beyond any FHIR resource.
    """
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError as error:
        raise Unprocessable(f"A value of the patch cannot be stored as JSON ({error}).",
                            code="too-costly") from None


def member_size(key: str, value_size: int) -> int:
    """An object member costs its value plus ``"key":`` and a separating comma."""
    return value_size + len(key) + 4


class PatchBudget:
    """Running account of one patch against its :class:`PatchLimits`."""

    def __init__(self, limits: PatchLimits, resource_size: int) -> None:
        self.limits = limits
        self.size = resource_size  # the patched resource's estimated size so far
        self.written = 0  # bytes the operations have inserted so far
        self.visits = 0  # elements the paths have been evaluated on so far

    def check_operation_count(self, count: int, expression: str) -> None:
        if count > self.limits.max_operations:
            raise Unprocessable(
                f"The patch has {count} operations; at most {self.limits.max_operations} "
                "are accepted in one patch (split it, or send the whole resource with PUT).",
                code="too-costly", expression=expression)

    def spend(self, added: int, removed: int = 0) -> None:
        """Account for an operation that inserts ``added`` and drops ``removed`` bytes;
        raise 422 (before anything is built) when a limit would be passed."""
        size, written = self.size + added - removed, self.written + added
        limit = self.limits.max_bytes
        if size > limit:
            raise Unprocessable(
                f"It would grow the resource to about {size:,} bytes, over the {limit:,}-byte "
                "limit on patched resources (the request body limit); nothing was changed.",
                code="too-costly")
        if written > limit:
            raise Unprocessable(
                f"The patch would write more than {limit:,} bytes in all (values added, "
                "replaced or copied); nothing was changed.", code="too-costly")
        self.size, self.written = size, written

    def visit(self, count: int) -> None:
        """Account for a path step evaluated on ``count`` elements."""
        self.visits += count
        if self.visits > self.limits.max_path_visits:
            raise Unprocessable(
                f"The patch's paths visit more than {self.limits.max_path_visits:,} elements "
                "in all; use more selective paths or fewer operations.", code="too-costly")
