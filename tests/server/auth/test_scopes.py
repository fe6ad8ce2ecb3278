"""SMART scope parsing and narrowing: v1 and v2 forms, constraints, and what never parses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hygeia.server.auth.access import Access, Restriction
from hygeia.server.auth.scopes import ScopeError, ScopeRule, Scopes, parse_rule


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


def test_a_wildcard_registration_never_grants_the_audit_trail() -> None:
    registered = Scopes.parse("system/*.rs")
    granted = Scopes.parse("system/AuditEvent.rs system/*.rs").within(registered)
    assert granted.text == "system/*.rs"
    assert Scopes.parse("patient/AuditEvent.rs").within(Scopes.parse("patient/*.cruds")).empty


def test_a_grant_keeps_the_syntax_of_the_request() -> None:
    assert Scopes.parse("system/*.read").within(Scopes.parse("system/*.rs")).text == \
        "system/*.read"
    assert Scopes.parse("system/*.*").within(Scopes.parse("system/*.rs")).text == \
        "system/*.read"
    assert Scopes.parse("user/Patient.write").within(Scopes.parse("user/*.cruds")).text == \
        "user/Patient.write"
    # v1 cannot say "create and update only": nothing a v1 client would misread is granted
    assert Scopes.parse("user/*.*").within(Scopes.parse("user/*.cu")).empty
    assert Scopes.parse("system/*.rs").within(Scopes.parse("system/*.read")).text == \
        "system/*.rs"


def test_a_request_naming_no_resource_type_or_malformed_is_refused() -> None:
    for word in ("system/Foo.read", "system/Patient.xyz", "patient/observation.rs",
                 "user/Patient"):
        with pytest.raises(ScopeError, match="'"):
            Scopes.parse_request(f"openid {word}")
    assert Scopes.parse_request("email patient openid system/Patient.read").text == \
        "system/Patient.read openid"


CONTEXT_NAMES = ("patient", "user", "system")
TYPES = ("Observation", "Patient", "AuditEvent", "Practitioner", "*")
PERMISSIONS = ("read", "write", "*", "r", "s", "rs", "cu", "cruds", "cud", "crs", "ds")
CONSTRAINTS = ("", "?category=laboratory", "?status=final")
PROBED_TYPES = ("Observation", "Patient", "AuditEvent", "Practitioner", "Binary")

scope_rules = st.builds(lambda c, t, p, q: f"{c}/{t}.{p}{q}", st.sampled_from(CONTEXT_NAMES),
                        st.sampled_from(TYPES), st.sampled_from(PERMISSIONS),
                        st.sampled_from(CONSTRAINTS))


def _in_context(scopes: Scopes, context: str) -> Access:
    """An Access with only ``scopes``' rules of one context (patient: bound to p1)."""
    rules = tuple(rule for rule in scopes.rules if rule.context == context)
    return Access("c", Scopes(rules), "someone", patient="p1")


def _covered(granted: Restriction, registered: list[Restriction]) -> bool:
    """Some registered way reaches at least everything ``granted`` reaches."""
    return any(r.patient in (None, granted.patient)
               and set(r.constraints) <= set(granted.constraints) for r in registered)


@settings(max_examples=400)
@given(st.lists(scope_rules, max_size=6), st.lists(scope_rules, max_size=6))
def test_a_grant_never_reaches_what_the_registration_does_not(
        registered_words: list[str], requested_words: list[str]) -> None:
    registered = Scopes.parse(" ".join(registered_words))
    # the token carries the grant as text: what is enforced is that text, read back
    granted = Scopes.parse(Scopes.parse_request(" ".join(requested_words))
                           .within(registered).text)
    for context in CONTEXT_NAMES:
        may, asked = _in_context(registered, context), _in_context(granted, context)
        for resource_type in PROBED_TYPES:
            for action in "cruds":
                allowed = may.restrictions(resource_type, action)
                for restriction in asked.restrictions(resource_type, action):
                    assert _covered(restriction, allowed), (context, resource_type, action)
