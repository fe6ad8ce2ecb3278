"""The built-in CDS services, each a :class:`~hygeia.clinical.cds.model.CdsService`."""

from __future__ import annotations

from hygeia.clinical.cds.model import CdsService
from hygeia.clinical.cds.services.care_gaps import care_gaps_service
from hygeia.clinical.cds.services.drug_allergy import (
    drug_allergy_service,
    drug_allergy_sign_service,
)
from hygeia.clinical.cds.services.duplicate_order import (
    duplicate_order_select_service,
    duplicate_order_service,
)
from hygeia.clinical.cds.services.news2 import news2_service
from hygeia.clinical.cds.services.qsofa import qsofa_service
from hygeia.clinical.settings import DUPLICATE_ORDER_DAYS


def built_in(window_seconds: float,
             duplicate_days: float = DUPLICATE_ORDER_DAYS) -> list[CdsService]:
    """The services Hygeia offers, in discovery order: the contract's five, then the
    order checks on their other hook (``-sign`` / ``-select``)."""
    return [news2_service(window_seconds), qsofa_service(window_seconds),
            drug_allergy_service(), duplicate_order_service(duplicate_days),
            care_gaps_service(), drug_allergy_sign_service(),
            duplicate_order_select_service(duplicate_days)]
