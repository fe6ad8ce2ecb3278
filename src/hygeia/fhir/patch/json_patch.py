"""Apply a JSON Patch (RFC 6902) to a resource, one priced operation at a time.

The operations themselves are ``jsonpatch``'s; what this module adds is the
bound (see :mod:`hygeia.fhir.patch.budget`): each operation is priced from
the document as it stands *before* it runs, so a patch whose result would
pass the limit is refused without being built.  Errors name the operation by
its JSON Pointer in the patch document (``/3`` is the fourth operation).

>>> apply_json_patch({"resourceType": "Patient", "name": [{"family": "A"}]},
...                  [{"op": "copy", "from": "/name/0", "path": "/name/-"}])["name"]
[{'family': 'A'}, {'family': 'A'}]
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from hygeia.fhir.outcome import BadRequest, FhirError, Issue, Unprocessable
from hygeia.fhir.patch.budget import PatchBudget, PatchLimits, json_size, member_size

_MISSING = object()


def apply_json_patch(resource: dict[str, Any], operations: Any,
                     limits: PatchLimits | None = None) -> dict[str, Any]:
    """Patch ``resource`` in place and return it; 400 for a malformed patch, 422 for
    one that cannot be applied or would pass ``limits``."""
    if not isinstance(operations, list):
        raise BadRequest("A JSON Patch body must be an array of operations.", code="structure")
    budget = PatchBudget(limits or PatchLimits(), json_size(resource))
    budget.check_operation_count(len(operations), "/")
    _check_structure(operations)
    document: Any = resource
    for index, operation in enumerate(operations):
        document = _apply_one(document, operation, budget, index)
    if not isinstance(document, dict):
        raise Unprocessable("The JSON Patch replaced the whole resource with a non-object.")
    return document


def _check_structure(operations: list[Any]) -> None:
    """Every operation well-formed (op, path, from, value) before any is applied."""
    try:
        jsonpatch.JsonPatch(operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise BadRequest(f"The JSON Patch is malformed: {error}.", code="structure") from None
    except (TypeError, KeyError, ValueError) as error:
        raise BadRequest(f"The JSON Patch is malformed: {error}.", code="structure") from None


def _apply_one(document: Any, operation: dict[str, Any], budget: PatchBudget,
               index: int) -> Any:
    where = f"/{index}"
    summary = f"Operation {index} ({operation.get('op')} {operation.get('path')!r})"
    try:
        added, removed = _price(document, operation)
        if operation["op"] == "copy":
            budget.copy(added)
        budget.spend(added, removed)
        return jsonpatch.JsonPatch([operation]).apply(document, in_place=True)
    except FhirError as error:
        raise type(error)(issues=[Issue(i.code, f"{summary}: {i.diagnostics}", where)
                                  for i in error.issues]) from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise Unprocessable(f"{summary} could not be applied: {error}.", expression=where,
                            code="processing") from None
    except (TypeError, KeyError, ValueError, IndexError, RecursionError) as error:
        raise Unprocessable(f"{summary} could not be applied: {error!r}.", expression=where,
                            code="processing") from None


def _price(document: Any, operation: dict[str, Any]) -> tuple[int, int]:
    """(bytes the operation inserts, bytes it drops), read from the document before it
    runs; an operation that will fail anyway costs nothing (jsonpatch reports it)."""
    kind, path = operation["op"], str(operation["path"])
    if kind == "remove":
        return 0, _size_at(document, path)
    if kind == "test":
        return 0, 0
    if kind == "move":
        return 0, _replaced(document, path)
    value = operation.get("value", _MISSING) if kind != "copy" else \
        _value_at(document, str(operation.get("from")))
    if value is _MISSING:
        return 0, 0
    if kind == "replace":
        return json_size(value), _size_at(document, path)
    return _inserted(path, json_size(value)), _replaced(document, path)


def _inserted(path: str, value_size: int) -> int:
    """What adding a value at ``path`` costs, with its member name when there is one."""
    key = path.rsplit("/", 1)[-1]
    return member_size(key, value_size)


def _replaced(document: Any, path: str) -> int:
    """``add`` and ``move`` onto an existing object member replace it; into an array
    they insert, dropping nothing; at the root (``""``) they replace the document."""
    if path == "":
        return json_size(document)
    parent = _value_at(document, path.rsplit("/", 1)[0]) if "/" in path else _MISSING
    if isinstance(parent, dict):
        return _size_at(document, path)
    return 0


def _size_at(document: Any, path: str) -> int:
    value = _value_at(document, path)
    return 0 if value is _MISSING else json_size(value)


def _value_at(document: Any, path: str) -> Any:
    try:
        return jsonpatch.JsonPointer(path).resolve(document, _MISSING)
    except (jsonpatch.JsonPointerException, TypeError, KeyError, IndexError, ValueError):
        return _MISSING
