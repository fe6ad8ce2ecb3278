"""The ``drug-allergy`` service (order-select) and ``drug-allergy-sign`` (order-sign): a
drafted medication the patient is allergic to.

A draft MedicationRequest (on order-select, one of the ``selections``; on
order-sign, any of the ``draftOrders`` being signed) whose ingredient (RxNorm) is a recorded
AllergyIntolerance substance, or belongs to its class, or to a class it is
cross-sensitive with, gives a card: critical when the allergy's criticality is
high, a warning otherwise, with a suggestion to remove the order. The knowledge is
the data file ``knowledge/drug_allergy.json`` (its sources are listed in it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from hygeia.clinical.cds.model import CdsService, HookCall, Source, card
from hygeia.clinical.cds.services.orders import (
    draft_orders,
    order_codes,
    order_text,
    reference,
)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SOURCE = Source("Hygeia drug-allergy check (RxNorm ingredients and classes)")
OVERRIDE_REASONS = [
    {"system": "urn:hygeia:codesystem:cds-override", "code": "tolerated-before",
     "display": "The patient has tolerated this medication before"},
    {"system": "urn:hygeia:codesystem:cds-override", "code": "benefit-outweighs-risk",
     "display": "The benefit outweighs the risk; the patient will be monitored"},
    {"system": "urn:hygeia:codesystem:cds-override", "code": "allergy-refuted",
     "display": "The recorded allergy is not a true allergy"}]
PREFETCH = {"allergies": "AllergyIntolerance?patient={{context.patientId}}"}
INACTIVE = ("inactive", "resolved")


@dataclass(frozen=True, slots=True)
class Knowledge:
    ingredients: dict[str, dict[str, Any]]
    products: dict[str, list[str]]
    classes: dict[str, dict[str, str]]
    cross: dict[str, list[str]]
    allergy_codes: dict[str, dict[str, str]]

    def name_pattern(self, name: str) -> re.Pattern[str]:
        return re.compile(rf"\b{re.escape(name.lower())}", re.IGNORECASE)

    def ingredients_of_order(self, order: dict[str, Any]) -> set[str]:
        found: set[str] = set()
        for code in order_codes(order):
            system, _, value = code.partition("|")
            if system == RXNORM:
                found.update(self.products.get(value, []))
                if value in self.ingredients:
                    found.add(value)
        text = order_text(order)
        found.update(id for id, ingredient in self.ingredients.items()
                     if self.name_pattern(ingredient["name"]).search(text))
        return found

    def allergens(self, allergy: dict[str, Any]) -> tuple[set[str], set[str]]:
        """(ingredients, classes) an AllergyIntolerance names."""
        ingredients: set[str] = set()
        classes: set[str] = set()
        concept = allergy.get("code") or {}
        texts = [str(concept.get("text") or "")]
        for coding in concept.get("coding") or []:
            texts.append(str(coding.get("display") or ""))
            key = f"{coding.get('system')}|{coding.get('code')}"
            if coding.get("system") == RXNORM:
                ingredients.update(self.products.get(str(coding.get("code")), []))
                if coding.get("code") in self.ingredients:
                    ingredients.add(str(coding.get("code")))
            known = self.allergy_codes.get(key, {})
            if "class" in known:
                classes.add(known["class"])
            if "ingredient" in known:
                ingredients.add(known["ingredient"])
        text = " ".join(texts)
        ingredients.update(id for id, ingredient in self.ingredients.items()
                           if self.name_pattern(ingredient["name"]).search(text))
        classes.update(id for id, group in self.classes.items()
                       if self.name_pattern(group["name"]).search(text))
        return ingredients, classes


@cache
def knowledge() -> Knowledge:
    data = json.loads((files("hygeia.clinical.cds") / "knowledge" / "drug_allergy.json")
                      .read_text(encoding="utf-8"))
    return Knowledge(data["ingredients"], data["products"], data["classes"],
                     data["cross_sensitivities"], data["allergy_codes"])


def drug_allergy_service() -> CdsService:
    return CdsService(
        "drug-allergy", "order-select", "Drug-allergy check",
        "Warns when a selected medication order contains an ingredient the patient is "
        "allergic to, or one of its class or a cross-sensitive class.",
        PREFETCH, drug_allergy_cards)


def drug_allergy_sign_service() -> CdsService:
    """The same check when the orders are signed (every draft order, not a selection)."""
    return CdsService(
        "drug-allergy-sign", "order-sign", "Drug-allergy check at signing",
        "Warns when a medication order being signed contains an ingredient the patient is "
        "allergic to, or one of its class or a cross-sensitive class.",
        PREFETCH, drug_allergy_cards)


def _why(facts: Knowledge, ingredients: set[str], allergy: dict[str, Any]) -> str | None:
    """Why the order's ingredients clash with the allergy, in words; None if they don't."""
    named, groups = facts.allergens(allergy)
    for ingredient in sorted(ingredients):
        name = facts.ingredients[ingredient]["name"]
        if ingredient in named:
            return f"contains {name}, a recorded allergen"
        own = set(facts.ingredients[ingredient]["classes"])
        allergen_classes = groups | {group for id in named
                                     for group in facts.ingredients[id]["classes"]}
        if own & allergen_classes:
            group = sorted(own & allergen_classes)[0]
            return f"contains {name}, of the {facts.classes[group]['name']} class the " \
                   "patient is allergic to"
        crossing = {other for group in allergen_classes
                    for other in facts.cross.get(group, [])}
        if own & crossing:
            group = sorted(own & crossing)[0]
            return f"contains {name} ({facts.classes[group]['name']}), cross-sensitive " \
                   "with a recorded allergy"
    return None


def drug_allergy_cards(call: HookCall) -> list[dict[str, Any]]:
    facts = knowledge()
    allergies = [allergy for allergy in call.bundle("allergies")
                 if not any(c.get("code") in INACTIVE for c in
                            (allergy.get("clinicalStatus") or {}).get("coding") or [])
                 and not any(c.get("code") == "refuted" for c in
                             (allergy.get("verificationStatus") or {}).get("coding") or [])]
    cards = []
    for order in draft_orders(call, selected_only=call.hook == "order-select"):
        if order.get("resourceType") != "MedicationRequest":
            continue
        ingredients = facts.ingredients_of_order(order)
        for allergy in allergies:
            why = _why(facts, ingredients, allergy)
            if why is None:
                continue
            critical = allergy.get("criticality") == "high"
            allergen = (allergy.get("code") or {}).get("text") or \
                ((allergy.get("code") or {}).get("coding") or [{}])[0].get("display") or \
                "a recorded substance"
            cards.append(card(
                f"Allergy: {order_text(order)} {why}"[:140], "critical" if critical
                else "warning", SOURCE,
                detail=f"The order {why}. Recorded allergy: {allergen} (criticality "
                       f"{allergy.get('criticality') or 'unknown'}, "
                       f"AllergyIntolerance/{allergy.get('id')}).",
                suggestions=[{"label": f"Remove the order for {order_text(order)}",
                              "isRecommended": True,
                              "actions": [{"type": "delete",
                                           "description": "Remove the draft order",
                                           "resourceId": [reference(order)]}]}],
                override_reasons=OVERRIDE_REASONS))
            break
    return cards
