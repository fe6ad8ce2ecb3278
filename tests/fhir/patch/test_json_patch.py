"""JSON Patch (RFC 6902) with its bounds: priced before each operation runs."""

from __future__ import annotations

import copy
import time
from typing import Any

import orjson
import pytest

from hygeia.fhir.outcome import BadRequest, Unprocessable
from hygeia.fhir.patch import PatchLimits, apply_json_patch

PATIENT = {"resourceType": "Patient", "id": "p", "name": [{"family": "A", "given": ["B"]}]}
DOUBLING = {"op": "copy", "from": "/name", "path": "/name/-"}


def patched(operations: list[dict[str, Any]], limits: PatchLimits | None = None
            ) -> dict[str, Any]:
    return apply_json_patch(copy.deepcopy(PATIENT), operations, limits)


def test_operations_apply_in_order() -> None:
    result = patched([{"op": "add", "path": "/gender", "value": "female"},
                      {"op": "copy", "from": "/name/0", "path": "/name/-"},
                      {"op": "replace", "path": "/name/1/family", "value": "C"},
                      {"op": "move", "from": "/name/1", "path": "/name/0"},
                      {"op": "remove", "path": "/name/1/given"},
                      {"op": "test", "path": "/gender", "value": "female"}])
    assert result["name"] == [{"family": "C", "given": ["B"]}, {"family": "A"}]


def test_the_copy_bomb_is_refused_before_it_is_built() -> None:
    """Issue 13: 25 doubling copies (1 KB) asked for gigabytes; refused at the copy
    that would pass the limit, in milliseconds."""
    started = time.monotonic()
    with pytest.raises(Unprocessable) as raised:
        patched([DOUBLING] * 25)
    assert time.monotonic() - started < 1
    issue = raised.value.issues[0]
    assert issue.code == "too-costly"
    # the copies of 30 bytes of names, doubling, add up to 61 KB after 11; the 12th
    # would pass what a patch may copy (the resource's size plus 64 KB)
    assert issue.expression == "/11"
    assert issue.diagnostics.startswith("Operation 11 (copy '/name/-'): The patch would "
                                        "copy more than 65,6")


def test_the_result_size_is_bounded_too() -> None:
    with pytest.raises(Unprocessable, match="over the 2,000-byte limit") as raised:
        patched([DOUBLING] * 25, PatchLimits(max_bytes=2000))
    assert raised.value.issues[0].expression == "/5"


def test_the_limit_is_on_the_result_not_on_each_step() -> None:
    names = [{"family": "x" * 100}] * 50
    resource = {"resourceType": "Patient", "name": names}
    size = len(orjson.dumps(resource))
    grow = {"op": "add", "path": "/name/-", "value": {"family": "y" * 100}}
    apply_json_patch(copy.deepcopy(resource), [grow], PatchLimits(max_bytes=size + 200))
    with pytest.raises(Unprocessable, match="over the"):
        apply_json_patch(copy.deepcopy(resource), [grow, grow],
                         PatchLimits(max_bytes=size + 200))
    shrink_then_grow = [{"op": "remove", "path": "/name/0"}, grow]
    apply_json_patch(copy.deepcopy(resource), shrink_then_grow,
                     PatchLimits(max_bytes=size + 50))


def test_copying_and_removing_again_is_bounded_by_what_it_copies() -> None:
    """Removals shrink the result but do not refund the work of copying."""
    resource = {"resourceType": "Patient", "name": [{"family": "x" * 10_000}]}
    churn = [{"op": "copy", "from": "/name", "path": "/contact"},
             {"op": "remove", "path": "/contact"}] * 20
    with pytest.raises(Unprocessable, match="copy more than") as raised:
        apply_json_patch(resource, churn)
    assert raised.value.issues[0].expression == "/14"  # the 8th copy of 10 KB: 80 > 74 KB


def test_replacing_the_whole_document_is_priced_as_a_replacement() -> None:
    big = {"resourceType": "Patient", "id": "p", "text": {"status": "generated",
                                                          "div": "x" * 500}}
    limits = PatchLimits(max_bytes=len(orjson.dumps(big)) + 10)
    result = apply_json_patch(big, [{"op": "add", "path": "", "value": dict(PATIENT)}], limits)
    assert result == PATIENT


def test_operation_count_is_limited() -> None:
    test_id = {"op": "test", "path": "/id", "value": "p"}
    assert patched([test_id] * 10, PatchLimits(max_operations=10)) == PATIENT
    with pytest.raises(Unprocessable, match="11 operations; at most 10"):
        patched([test_id] * 11, PatchLimits(max_operations=10))


def test_values_too_deep_to_price_are_refused() -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    with pytest.raises(Unprocessable, match="cannot be stored as JSON"):
        patched([{"op": "add", "path": "/extension", "value": deep}])


@pytest.mark.parametrize(("operations", "error", "text"), [
    ({"op": "add"}, BadRequest, "array of operations"),
    ([{"op": "frobnicate", "path": "/id"}], BadRequest, "malformed"),
    ([{"path": "/id"}], BadRequest, "malformed"),
    ([{"op": "remove", "path": "/birthDate"}], Unprocessable, "could not be applied"),
    ([{"op": "test", "path": "/id", "value": "q"}], Unprocessable, "could not be applied"),
    ([{"op": "copy", "path": "/x"}], Unprocessable, "could not be applied"),
    ([{"op": "replace", "path": "", "value": []}], Unprocessable, "non-object"),
])
def test_bad_patches(operations: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        patched(operations)
