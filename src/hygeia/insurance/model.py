"""What a claim looks like while the pipeline adjudicates it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hygeia.insurance.plan import PlanRules

ZERO = Decimal("0.00")


@dataclass
class Line:
    """One claim item and the amounts decided for it."""

    sequence: int
    item: dict[str, Any]
    codes: list[tuple[str, str]]
    category: str
    submitted: Decimal
    service_date: str
    allowed: Decimal = ZERO
    denied: list[str] = field(default_factory=list)  # reason codes: the line pays nothing
    reduced: list[str] = field(default_factory=list)  # reason codes of a partial payment
    pended: list[str] = field(default_factory=list)  # sentences: the evidence that is missing
    deductible: Decimal = ZERO
    copay: Decimal = ZERO
    coinsurance: Decimal = ZERO
    secondary: Decimal = ZERO  # what a secondary coverage pays of the member's share
    units: Decimal = ZERO  # visits or units counted toward the category's limit
    cap: Decimal | None = None  # a secondary's view: it pays at most this

    @property
    def eligible(self) -> Decimal:
        return ZERO if self.denied else self.allowed

    @property
    def noncovered(self) -> Decimal:
        return self.submitted - self.eligible

    @property
    def member(self) -> Decimal:
        return self.deductible + self.copay + self.coinsurance

    @property
    def benefit(self) -> Decimal:
        """What this plan pays (a secondary: up to the member's share after the primary)."""
        own = self.eligible - self.member
        return own if self.cap is None else min(own, self.cap)

    @property
    def liability(self) -> Decimal:
        """What the member owes from this plan's view (primary, or secondary's)."""
        return self.eligible - self.benefit


@dataclass
class Accumulated:
    """What a member and their family have paid toward the plan's limits this period."""

    deductible: Decimal = ZERO
    family_deductible: Decimal = ZERO
    oop: Decimal = ZERO
    family_oop: Decimal = ZERO
    units: dict[str, Decimal] = field(default_factory=dict)  # the member's, by category


@dataclass
class Adjudication:
    """The claim, its lines, and what the steps found."""

    claim: dict[str, Any]
    lines: list[Line]
    service_date: str
    patient: str
    order: str = ""  # ledger order: service date, then first submission time
    claim_ref: str | None = None  # Claim/id once stored (None for a first submission)
    review: str | None = None  # a reviewer's decision on a pended claim: approve or deny
    coverage: dict[str, Any] | None = None
    rules: PlanRules | None = None
    errors: list[str] = field(default_factory=list)  # cannot be processed at all
    claim_denied: list[str] = field(default_factory=list)  # every line denied for these
    pended: list[str] = field(default_factory=list)  # the claim pends for these
    ledger: list[dict[str, Any]] = field(default_factory=list)  # the family's year, in order
    history: list[dict[str, Any]] = field(default_factory=list)  # the entries before it
    accumulated: Accumulated = field(default_factory=Accumulated)
    cache: dict[Any, Any] = field(default_factory=dict)  # shared by one batch's claims
    secondary: Adjudication | None = None  # the secondary coverage's view (coordination)
    out_of_network: bool = False  # the provider is in none of the plan's networks

    @property
    def outcome(self) -> str:
        if self.errors:
            return "error"
        if self.pended or any(line.pended for line in self.lines):
            return "queued"
        return "complete"
