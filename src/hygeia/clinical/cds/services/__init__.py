"""The built-in CDS services, each a :class:`~hygeia.clinical.cds.model.CdsService`."""

from __future__ import annotations

from hygeia.clinical.cds.model import CdsService
from hygeia.clinical.cds.services.news2 import news2_service
from hygeia.clinical.cds.services.qsofa import qsofa_service


def built_in(window_seconds: float) -> list[CdsService]:
    """The services Hygeia offers, in discovery order."""
    return [news2_service(window_seconds), qsofa_service(window_seconds)]
