"""Code systems and identifiers the insurance pillar writes and reads (docs/guide/insurance.md).

R4's adjudication CodeSystem has no code for coinsurance, for the part a plan does
not cover, or for what the member owes; those three live in Hygeia's own
CodeSystem :data:`HYGEIA_ADJUDICATION`, as do the reasons and the out-of-pocket
maximum benefit type.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
HYGEIA_ADJUDICATION = "urn:hygeia:CodeSystem:adjudication"
REASON = "urn:hygeia:CodeSystem:adjudication-reason"
BENEFIT_TYPE = "http://terminology.hl7.org/CodeSystem/benefit-type"
HYGEIA_BENEFIT_TYPE = "urn:hygeia:CodeSystem:benefit-type"
BENEFIT_UNIT = "http://terminology.hl7.org/CodeSystem/benefit-unit"
BENEFIT_CATEGORY = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
PAYER_SYSTEM = "urn:hygeia:payer"
PLAN_SYSTEM = "urn:hygeia:plan"
SERVICE_DATE = "urn:hygeia:insurance:service-date"
CLAIM_KEY = "urn:hygeia:insurance:claim-key"
LEDGER_ORDER = "urn:hygeia:insurance:ledger-order"
COB_ROLE = "urn:hygeia:insurance:cob-role"  # "secondary" on a secondary's ClaimResponse
UNITS = "urn:hygeia:insurance:units"  # visits or units a claim used, by benefit category
LEDGER_TAG = "urn:hygeia:insurance:ledger"  # meta.tag system of a ledger entry
CURRENCY = "USD"
LARGEST = Decimal("1e12")  # an amount at or above this is read as absent (a front-end error)

CONSULTATION = "3"
MRI = "62"

# (system, code) of every adjudication amount, in the order lines list them.
CATEGORIES: dict[str, str] = {
    "submitted": ADJUDICATION, "eligible": ADJUDICATION, "deductible": ADJUDICATION,
    "copay": ADJUDICATION, "coinsurance": HYGEIA_ADJUDICATION, "benefit": ADJUDICATION,
    "memberliability": HYGEIA_ADJUDICATION, "noncovered": HYGEIA_ADJUDICATION,
    "secondary": HYGEIA_ADJUDICATION,  # the EOB's part of benefit a secondary coverage paid
}

# Reason code -> the sentence a patient reads.
REASONS: dict[str, str] = {
    "above-fee-schedule": "The charge is more than the plan allows for this service; "
                          "you do not owe the difference.",
    "not-eligible": "You had no active coverage with this plan on the date of service.",
    "duplicate": "This service was already billed for the same day; it is paid once.",
    "no-prior-auth": "This service needs approval from your plan before it is done, "
                     "and there is no approval on file.",
    "exclusive-codes": "This service cannot be billed together with another service "
                       "on the same claim.",
    "units-per-day": "More units were billed than the plan allows in one day.",
    "deductible": "You pay this part until you meet your yearly deductible.",
    "copay": "You pay a fixed copay for a consultation.",
    "coinsurance": "After the deductible you pay 20% of the allowed amount.",
    "waiting-period": "Your plan covers this service only after a waiting period from the "
                      "start of your coverage, and it had not passed yet.",
    "out-of-network": "The provider is not in your plan's network: the plan pays less "
                      "for this service, or nothing.",
    "benefit-limit": "You have used all the visits or units your plan covers for this "
                     "kind of service this year.",
    "age-restriction": "Your plan covers this kind of service only for members of "
                       "certain ages.",
    "sex-restriction": "Your plan covers this kind of service only for members of "
                       "one sex.",
    "age-conflict": "This service is not billed for a patient of your age; ask your "
                    "provider to check the code.",
    "sex-conflict": "This service does not match the sex in your record; ask your "
                    "provider to check the code.",
    "review-denied": "A reviewer at your plan looked at this claim and decided "
                     "not to pay it.",
}


CENT = Decimal("0.01")


def money(value: Decimal) -> dict[str, object]:
    """A FHIR Money in USD. Amounts are Decimal cents throughout; JSON has only
    numbers, and a float's shortest form of a two-place decimal is that decimal.
    (:func:`cents` inlined: a claim writes some 25 amounts.)"""
    return {"value": float(value.quantize(CENT, rounding=ROUND_HALF_UP)), "currency": CURRENCY}


def amount(money_element: object) -> Decimal:
    """The Decimal of a FHIR Money (0 when absent), read through its text form."""
    value = money_element.get("value") if isinstance(money_element, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return Decimal(0)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)
    return number if number.is_finite() and abs(number) < LARGEST else Decimal(0)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)
