"""Transport-free FHIR use cases: interactions, bundles, jobs, loading, audit.

Nothing here knows HTTP: a :class:`FhirRequest` goes in, a
:class:`FhirResponse` comes out, so transaction entries, the CLI loader and
pillars all call the same functions.

The names below are loaded on first use, so a worker process that imports
``hygeia.server.loading.worker`` does not import the service (and with it
auth and audit).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hygeia.server.context import (
        AlertSettings,
        AuditSettings,
        AuthSettings,
        FhirRequest,
        FhirResponse,
        HttpSettings,
        JobSettings,
        OutboundSettings,
        SearchSettings,
        Settings,
        SubscriptionSettings,
    )
    from hygeia.server.service import FhirService

__all__ = ["AlertSettings", "AuditSettings", "AuthSettings", "FhirRequest", "FhirResponse",
           "FhirService", "HttpSettings", "JobSettings", "OutboundSettings", "SearchSettings",
           "Settings", "SubscriptionSettings"]

_HOMES = {
    "FhirRequest": "hygeia.server.context",
    "FhirResponse": "hygeia.server.context",
    "Settings": "hygeia.server.context",
    "AlertSettings": "hygeia.server.context",
    "AuditSettings": "hygeia.server.context",
    "AuthSettings": "hygeia.server.context",
    "HttpSettings": "hygeia.server.context",
    "JobSettings": "hygeia.server.context",
    "OutboundSettings": "hygeia.server.context",
    "SearchSettings": "hygeia.server.context",
    "SubscriptionSettings": "hygeia.server.context",
    "FhirService": "hygeia.server.service",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'hygeia.server' has no attribute {name!r}")
    return getattr(import_module(home), name)
