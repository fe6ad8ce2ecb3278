"""The insurance pillar: demo plan, claim adjudication, eligibility (docs/guide/insurance.md)."""
