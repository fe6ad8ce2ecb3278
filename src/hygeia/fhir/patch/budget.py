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
* its ``copy`` operations would copy more than the resource's own size plus
  64 KB in all.  Copying, unlike adding, is not paid for by the patch's own
  bytes, and the size bound alone is not enough: refused only at 64 MB, the
  25 copies still built 32 MB of tiny names, which took the worker to 1.2 GB
  and 35 s (measured).  With this bound a patch costs about what reading
  the resource costs, even when it removes what it copied; or
* it has more than ``max_operations`` operations, or the FHIRPath Patch
  paths visit more than ``max_path_visits`` elements in all, or its
  ``where()`` criteria are evaluated on more than ``max_where_bytes`` of
  elements in all (fhirpathpy takes about 50 us per small element).

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
MAX_WHERE_BYTES = 4 * 1024 * 1024  # of elements where() criteria are evaluated on
COPY_ALLOWANCE = 64 * 1024  # what any patch may copy, besides the resource's own size


@dataclass(frozen=True, slots=True)
class PatchLimits:
    """The bounds of one patch (JSON Patch or FHIRPath Patch)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_operations: int = DEFAULT_MAX_OPERATIONS
    max_path_visits: int = MAX_PATH_VISITS
    max_where_bytes: int = MAX_WHERE_BYTES


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
        self.copied = 0  # bytes the copy operations have copied so far
        self.copy_allowance = min(limits.max_bytes, resource_size + COPY_ALLOWANCE)
        self.visits = 0  # elements the paths have been evaluated on so far
        self.examined = 0  # bytes of elements where() criteria have been evaluated on

    def check_operation_count(self, count: int, expression: str) -> None:
        if count > self.limits.max_operations:
            raise Unprocessable(
                f"The patch has {count} operations; at most {self.limits.max_operations} "
                "are accepted in one patch (split it, or send the whole resource with PUT).",
                code="too-costly", expression=expression)

    def spend(self, added: int, removed: int = 0) -> None:
        """Account for an operation that inserts ``added`` and drops ``removed`` bytes;
        raise 422 (before anything is built) when the result would pass the limit."""
        size, limit = self.size + added - removed, self.limits.max_bytes
        if size > limit:
            raise Unprocessable(
                f"It would grow the resource to about {size:,} bytes, over the {limit:,}-byte "
                "limit on patched resources (the request body limit); nothing was changed.",
                code="too-costly")
        self.size = size

    def copy(self, copied: int) -> None:
        """Account for a copy of ``copied`` bytes, before it is made."""
        if self.copied + copied > self.copy_allowance:
            raise Unprocessable(
                f"The patch would copy more than {self.copy_allowance:,} bytes in all (a patch "
                "may copy at most the resource's own size plus 64 KB); nothing was changed.",
                code="too-costly")
        self.copied += copied

    def visit(self, count: int) -> None:
        """Account for a path step evaluated on ``count`` elements."""
        self.visits += count
        if self.visits > self.limits.max_path_visits:
            raise Unprocessable(
                f"The patch's paths visit more than {self.limits.max_path_visits:,} elements "
                "in all; use more selective paths or fewer operations.", code="too-costly")

    def examine(self, size: int) -> None:
        """Account for ``where()`` criteria evaluated on an element of ``size`` bytes."""
        self.examined += size
        if self.examined > self.limits.max_where_bytes:
            raise Unprocessable(
                f"The patch's where() criteria would examine more than "
                f"{self.limits.max_where_bytes:,} bytes of elements in all; use more "
                "selective paths (an index, or navigation before where()).", code="too-costly")
