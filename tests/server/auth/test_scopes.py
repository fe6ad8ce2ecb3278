"""SMART scope parsing and narrowing: v1 and v2 forms, constraints, and what never parses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hygeia.server.auth.scopes import ScopeRule, Scopes, parse_rule


def test_v1_and_v2_forms() -> None:
    assert parse_rule("patient/Observation.read") == ScopeRule("patient", "Observation", "rs")
    assert parse_rule("user/*.write") == ScopeRule("user", "*", "cud")
    assert parse_rule("system/*.*") == ScopeRule("system", "*", "cruds")
    assert parse_rule("patient/Observation.rs") == ScopeRule("patient", "Observation", "rs")
    assert parse_rule("user/Encounter.cruds") == ScopeRule("user", "Encounter", "cruds")


def test_a_v2_query_narrows_the_scope() -> None:
    rule = parse_rule("patient/Observation.rs?category=http://terminology.hl7.org/"
                      "CodeSystem/observation-category|laboratory")
    assert rule is not None and rule.constraints == (
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),)


def test_nonsense_is_not_a_scope() -> None:
    for word in ("patient/Observation.sr", "doctor/*.rs", "patient/observation.rs",
                 "patient/Observation.", "patient/Observation.rs?", "patient/*.rwx"):
        assert parse_rule(word) is None, word
    scopes = Scopes.parse("openid made-up patient/*.rs launch/patient")
    assert [rule.text for rule in scopes.rules] == ["patient/*.rs"]
    assert scopes.other == {"openid", "launch/patient"}


def test_wildcards_never_reach_the_audit_trail() -> None:
    rule = ScopeRule("user", "*", "cruds")
    assert rule.allows("Observation", "r") and not rule.allows("AuditEvent", "r")
    assert ScopeRule("user", "AuditEvent", "rs").allows("AuditEvent", "s")


def test_within_grants_the_overlap_only() -> None:
    allowed = Scopes.parse("patient/*.rs openid")
    asked = Scopes.parse("patient/Observation.cruds user/*.rs openid fhirUser")
    granted = asked.within(allowed)
    assert granted.text == "patient/Observation.rs openid"
    assert Scopes.parse("patient/*.rs").within(Scopes.parse("patient/Observation.rs")).rules == ()
    narrowed = Scopes.parse("patient/Observation.rs").within(
        Scopes.parse("patient/Observation.rs?category=vital-signs"))
    assert narrowed.rules[0].constraints == (("category", "vital-signs"),)


scope_words = st.text(alphabet=st.sampled_from("patienusrysm/*.?=&|ObservationCRUDScruds:"),
                      max_size=40)


@given(st.lists(scope_words, max_size=6))
def test_parsing_never_fails_and_never_widens(words: list[str]) -> None:
    scopes = Scopes.parse(" ".join(words))
    for rule in scopes.rules:
        assert rule.context in ("patient", "user", "system")
        assert rule.actions and all(a in "cruds" for a in rule.actions)
        assert parse_rule(rule.text) == rule  # the text form reads back the same
    assert scopes.within(Scopes()).rules == ()
    again = scopes.within(scopes)
    for rule in again.rules:
        assert any(set(rule.actions) <= set(mine.actions) for mine in scopes.rules)
