"""SMART on FHIR scopes, v1 (``patient/Observation.read``) and v2 (``patient/Observation.rs``).

A resource scope is ``CONTEXT/TYPE.PERMISSIONS[?param=value&...]``: the context
is ``patient`` (the launch patient's compartment), ``user`` (what the signed-in
user may see) or ``system`` (a backend service); the type is a resource type
or ``*``; the permissions are v2's ``cruds`` letters (in that order) or v1's
``read`` (= ``rs``), ``write`` (= ``cud``) and ``*`` (= ``cruds``).  A v2 query
narrows the scope to resources that match it (``?category=laboratory``).

Example::

    >>> Scopes.parse("patient/Observation.rs?category=vital-signs launch/patient").rules[0]
    ScopeRule(context='patient', resource_type='Observation', actions='rs', ...)

``*`` never covers AuditEvent: the audit trail is read only by clients granted
AuditEvent by name, so an ordinary ``user/*.rs`` app cannot watch who looked
at what.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
ACTIONS = "cruds"
V1_ACTIONS = {"read": "rs", "write": "cud", "*": "cruds"}
# types a wildcard does not reach: they must be named in the scope
EXPLICIT_ONLY = frozenset({"AuditEvent"})
# scopes that carry no resource access but mean something to the authorization server
KNOWN_OTHER = frozenset({"openid", "fhirUser", "profile", "launch", "launch/patient",
                         "launch/encounter", "offline_access", "online_access"})

_RESOURCE_SCOPE = re.compile(
    r"^(patient|user|system)/([A-Z][A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)(\?[^\s]*)?$")


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """One resource scope: who-context, type (or ``*``), permitted actions, narrowing query."""

    context: str
    resource_type: str
    actions: str  # a subsequence of "cruds"
    constraints: tuple[tuple[str, str], ...] = ()

    def applies_to(self, resource_type: str) -> bool:
        if self.resource_type == "*":
            return resource_type not in EXPLICIT_ONLY
        return self.resource_type == resource_type

    def allows(self, resource_type: str, action: str) -> bool:
        return action in self.actions and self.applies_to(resource_type)

    @property
    def text(self) -> str:
        query = "&".join(f"{name}={value}" for name, value in self.constraints)
        return f"{self.context}/{self.resource_type}.{self.actions}" + (
            f"?{query}" if query else "")

    def within(self, allowed: ScopeRule) -> ScopeRule | None:
        """The part of this (requested) rule that ``allowed`` grants, or None."""
        if allowed.context != self.context:
            return None
        if allowed.resource_type != "*" and allowed.resource_type != self.resource_type:
            return None
        if self.resource_type == "*" and allowed.resource_type != "*":
            return None  # a wildcard request is granted only by a wildcard
        actions = "".join(a for a in ACTIONS if a in self.actions and a in allowed.actions)
        if not actions:
            return None
        constraints = tuple(dict.fromkeys((*self.constraints, *allowed.constraints)))
        return ScopeRule(self.context, self.resource_type, actions, constraints)


@dataclass(frozen=True, slots=True)
class Scopes:
    """A parsed scope string: resource rules plus the other scopes (openid, launch...)."""

    rules: tuple[ScopeRule, ...] = ()
    other: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Scopes:
        """Parse a space-separated scope string; scopes nobody defined are dropped."""
        rules: list[ScopeRule] = []
        other: set[str] = set()
        for word in text.split():
            rule = parse_rule(word)
            if rule is not None:
                rules.append(rule)
            elif word in KNOWN_OTHER:
                other.add(word)
        return cls(tuple(dict.fromkeys(rules)), frozenset(other))

    @property
    def text(self) -> str:
        return " ".join([*(rule.text for rule in self.rules), *sorted(self.other)])

    def within(self, allowed: Scopes) -> Scopes:
        """What of these (requested) scopes ``allowed`` grants: never more than either."""
        rules = [granted for rule in self.rules for limit in allowed.rules
                 if (granted := rule.within(limit)) is not None]
        return Scopes(tuple(dict.fromkeys(rules)), self.other & allowed.other)

    def rules_for(self, resource_type: str, action: str) -> list[ScopeRule]:
        return [rule for rule in self.rules if rule.allows(resource_type, action)]

    def has(self, scope: str) -> bool:
        return scope in self.other


def parse_rule(word: str) -> ScopeRule | None:
    """One resource scope, or None when ``word`` is not one."""
    match = _RESOURCE_SCOPE.match(word)
    if match is None:
        return None
    context, resource_type, permissions, query = match.groups()
    actions = V1_ACTIONS.get(permissions, permissions)
    if not actions:
        return None
    constraints = tuple(parse_qsl(query[1:], keep_blank_values=True)) if query else ()
    if query and not constraints:
        return None
    return ScopeRule(context, resource_type, actions, constraints)
