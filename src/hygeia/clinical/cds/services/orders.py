"""What the order services share: the draft orders of an order-select or order-sign call,
and the codes of a medication or service order."""

from __future__ import annotations

from typing import Any

from hygeia.clinical.cds.model import HookCall

ORDER_TYPES = ("MedicationRequest", "ServiceRequest")


def draft_orders(call: HookCall, selected_only: bool) -> list[dict[str, Any]]:
    """The draft orders of the call (for order-select: only those in ``selections``)."""
    bundle = call.context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    orders = [entry["resource"] for entry in entries or []
              if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
              and entry["resource"].get("resourceType") in ORDER_TYPES]
    if not selected_only:
        return orders
    selections = {str(item) for item in call.context.get("selections") or []}
    return [order for order in orders
            if f"{order.get('resourceType')}/{order.get('id')}" in selections]


def order_concept(order: dict[str, Any]) -> dict[str, Any]:
    """What is ordered: the medication's or the service's CodeableConcept."""
    concept = order.get("medicationCodeableConcept") or order.get("code")
    return concept if isinstance(concept, dict) else {}


def order_codes(order: dict[str, Any]) -> set[str]:
    """``system|code`` of each coding of what is ordered."""
    return {f"{coding.get('system')}|{coding.get('code')}"
            for coding in order_concept(order).get("coding") or []
            if isinstance(coding, dict) and coding.get("code")}


def order_text(order: dict[str, Any]) -> str:
    concept = order_concept(order)
    displays = [str(coding.get("display")) for coding in concept.get("coding") or []
                if isinstance(coding, dict) and coding.get("display")]
    return str(concept.get("text") or (displays[0] if displays else "the order"))


def reference(order: dict[str, Any]) -> str:
    return f"{order.get('resourceType')}/{order.get('id')}"
