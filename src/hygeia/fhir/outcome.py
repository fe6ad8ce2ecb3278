"""OperationOutcome errors: the one exception family every layer raises.

Every error a client can see is an OperationOutcome carrying a stable issue
code, a human sentence and, where it applies, the FHIRPath ``expression`` of
the offending element.  Only the HTTP edge turns a :class:`FhirError` into a
response; inner layers just raise.

Exception hierarchy::

    FhirError (status 400 unless a subclass says otherwise)
    +-- BadRequest              400  unparseable input, bad parameters
    +-- Unauthorized            401
    +-- Forbidden               403
    +-- NotFound                404  unknown type, id or route
    +-- MethodNotAllowed        405
    +-- NotAcceptable           406
    +-- Conflict                409  id clash, version conflict
    +-- Gone                    410  the resource was deleted
    +-- PreconditionFailed      412  If-Match / conditional with many matches
    +-- PayloadTooLarge         413
    +-- UnsupportedMediaType    415
    +-- Unprocessable           422  parsed but invalid (validation)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: what went wrong, in words, and where."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """Build an OperationOutcome resource from issues."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [issue.to_fhir() for issue in issues],
    }


def information(text: str) -> dict[str, Any]:
    """An OperationOutcome that reports success (used for Prefer: return=OperationOutcome)."""
    return operation_outcome([Issue("informational", text, severity="information")])


class FhirError(Exception):
    """An error that is reported to the client as an OperationOutcome."""

    status = 400
    default_code = "invalid"

    def __init__(
        self,
        message: str | None = None,
        *,
        issues: Iterable[Issue] | None = None,
        expression: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        collected = list(issues or [])
        if message is not None:
            collected.insert(0, Issue(code or self.default_code, message, expression))
        if not collected:
            collected.append(Issue(self.default_code, type(self).__name__))
        self.issues = collected
        self.headers = headers or {}
        super().__init__(collected[0].diagnostics)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status = 400
    default_code = "invalid"


class Unauthorized(FhirError):
    status = 401
    default_code = "login"


class Forbidden(FhirError):
    status = 403
    default_code = "forbidden"


class NotFound(FhirError):
    status = 404
    default_code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    default_code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    default_code = "not-supported"


class Conflict(FhirError):
    status = 409
    default_code = "conflict"


class Gone(FhirError):
    status = 410
    default_code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    default_code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    default_code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    default_code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    default_code = "processing"
