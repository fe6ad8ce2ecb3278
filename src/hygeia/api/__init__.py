"""The thin WSGI adapter (HTTP <-> FhirRequest/FhirResponse) and the HTTP front end that
serves it (api/http). No business logic here.

``create_app`` is imported on first use: ``hygeia serve``'s supervisor uses the front
end's helpers (api/http) before it forks, and must not import prometheus-client then
(its multiprocess mode is chosen when it is imported, in the serving processes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hygeia.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from hygeia.api.app import create_app

        return create_app
    raise AttributeError(name)
