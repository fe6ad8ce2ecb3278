"""The ``duplicate-order`` service (order-sign) and ``duplicate-order-select``
(order-select): the same medication or test ordered twice.

A draft MedicationRequest or ServiceRequest (on order-select, only those in
``selections``) duplicates an active order of the
patient with a code in common (any ``system|code`` of what is ordered) authored
within the window (``hygeia serve --duplicate-order-days``, default 30): a warning
card with a suggestion to remove the draft.
"""

from __future__ import annotations

from typing import Any

from hygeia.clinical.cds.model import CdsService, HookCall, Source, card
from hygeia.clinical.cds.services.orders import (
    draft_orders,
    order_codes,
    order_text,
    reference,
)
from hygeia.fhir.datetime import fhir_datetime_range, now_us
from hygeia.fhir.outcome import FhirError

SOURCE = Source("Hygeia duplicate-order check")
PREFETCH = {
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "services": "ServiceRequest?patient={{context.patientId}}&status=active",
}
DAY_US = 86_400 * 1_000_000


def duplicate_order_service(window_days: float) -> CdsService:
    window = int(window_days * DAY_US)

    def answer(call: HookCall) -> list[dict[str, Any]]:
        return duplicate_cards(call, window)

    return CdsService(
        "duplicate-order", "order-sign", "Duplicate order check",
        f"Warns when a medication or test being signed is already actively ordered for "
        f"the patient within {window_days:g} days.", PREFETCH, answer)


def duplicate_order_select_service(window_days: float) -> CdsService:
    """The same check as soon as an order is selected (only the selected drafts)."""
    window = int(window_days * DAY_US)

    def answer(call: HookCall) -> list[dict[str, Any]]:
        return duplicate_cards(call, window)

    return CdsService(
        "duplicate-order-select", "order-select", "Duplicate order check at selection",
        f"Warns when a selected medication or test is already actively ordered for the "
        f"patient within {window_days:g} days.", PREFETCH, answer)


def _authored(order: dict[str, Any]) -> int | None:
    text = order.get("authoredOn")
    if not isinstance(text, str):
        return None
    try:
        return fhir_datetime_range(text)[0]
    except FhirError:
        return None


def duplicate_cards(call: HookCall, window: int) -> list[dict[str, Any]]:
    since = now_us() - window
    active = [order for key in PREFETCH for order in call.bundle(key)
              if order.get("status") == "active"]
    cards = []
    for draft in draft_orders(call, selected_only=call.hook == "order-select"):
        codes = order_codes(draft)
        for existing in active:
            authored = _authored(existing)
            if existing.get("id") == draft.get("id") or not codes & order_codes(existing) \
                    or (authored is not None and authored < since):
                continue
            when = str(existing["authoredOn"])[:10] if existing.get("authoredOn") \
                else "date unknown"
            cards.append(card(
                f"Duplicate: {order_text(draft)} is already ordered ({when})"[:140],
                "warning", SOURCE,
                detail=f"{reference(existing)} orders {order_text(existing)}, active since "
                       f"{when}.",
                suggestions=[{"label": f"Remove the new order for {order_text(draft)}",
                              "isRecommended": True,
                              "actions": [{"type": "delete",
                                           "description": "Remove the duplicate draft order",
                                           "resourceId": [reference(draft)]}]}]))
            break
    return cards
