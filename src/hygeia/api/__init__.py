"""The thin ASGI adapter: HTTP <-> FhirRequest/FhirResponse. No business logic here."""

from hygeia.api.app import create_app

__all__ = ["create_app"]
