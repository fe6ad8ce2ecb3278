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

Narrowing a request to a registration (:meth:`ScopeRule.within`) asks the
registered rule the very question access checking asks
(:meth:`ScopeRule.applies_to`), so a grant can never reach a type, context or
action its registration does not: ``system/AuditEvent.rs`` asked of a client
registered ``system/*.rs`` is dropped, not granted.  A grant keeps the syntax
of the request (a v1 ``system/*.read`` is granted as ``system/*.read``), so a
client that only knows v1 understands its token response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from hygeia.fhir.spec import resource_types

CONTEXTS = ("patient", "user", "system")
ACTIONS = "cruds"
V1_ACTIONS = {"read": "rs", "write": "cud", "*": "cruds"}
V1_WORDS = {actions: word for word, actions in V1_ACTIONS.items()}
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
    # written in SMART v1 syntax (read/write/*): granted back the same way; two rules
    # that differ only in syntax mean the same, so this takes no part in equality
    v1: bool = field(default=False, compare=False)

    def applies_to(self, resource_type: str) -> bool:
        if self.resource_type == "*":
            return resource_type not in EXPLICIT_ONLY
        return self.resource_type == resource_type

    def allows(self, resource_type: str, action: str) -> bool:
        return action in self.actions and self.applies_to(resource_type)

    @property
    def text(self) -> str:
        query = "&".join(f"{name}={value}" for name, value in self.constraints)
        permissions = V1_WORDS.get(self.actions, self.actions) if self.v1 else self.actions
        return f"{self.context}/{self.resource_type}.{permissions}" + (
            f"?{query}" if query else "")

    def within(self, allowed: ScopeRule) -> ScopeRule | None:
        """The part of this (requested) rule that ``allowed`` grants, or None.

        A named type is granted only when ``allowed`` applies to it by the rule
        access checking uses (so ``*`` never grants AuditEvent); a wildcard only by
        a wildcard.  The actions are those both name; the constraints those of both
        (each narrows further).  A v1 request gets the largest v1 grant inside:
        ``system/*.*`` within ``system/*.rs`` is ``system/*.read``.
        """
        if allowed.context != self.context:
            return None
        if self.resource_type == "*":
            if allowed.resource_type != "*":
                return None  # a wildcard request is granted only by a wildcard
        elif not allowed.applies_to(self.resource_type):
            return None
        actions = "".join(a for a in ACTIONS if a in self.actions and a in allowed.actions)
        if self.v1:
            actions = _largest_v1(actions)
        if not actions:
            return None
        constraints = tuple(dict.fromkeys((*self.constraints, *allowed.constraints)))
        return ScopeRule(self.context, self.resource_type, actions, constraints, self.v1)


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

    @classmethod
    def parse_request(cls, text: str) -> Scopes:
        """Parse the scopes a client asks for, refusing what cannot be right.

        A word that starts like a resource scope (``patient/``, ``user/``,
        ``system/``) must be one and name a resource type of FHIR R4 (or ``*``):
        :class:`ScopeError` says which word is wrong.  Other words nobody defined
        (``email``) are dropped, as RFC 6749 allows.
        """
        for word in text.split():
            context, slash, _ = word.partition("/")
            if not slash or context not in CONTEXTS or word in KNOWN_OTHER:
                continue
            rule = parse_rule(word)
            if rule is None:
                raise ScopeError(f"'{word}' is not a SMART scope (CONTEXT/TYPE.PERMISSIONS, "
                                 "e.g. system/Patient.rs or system/Patient.read).")
            if rule.resource_type != "*" and rule.resource_type not in resource_types():
                raise ScopeError(f"'{word}' names {rule.resource_type}, which is not a "
                                 "FHIR R4 resource type.")
        return cls.parse(text)

    @property
    def empty(self) -> bool:
        return not self.rules and not self.other

    def rules_for(self, resource_type: str, action: str) -> list[ScopeRule]:
        return [rule for rule in self.rules if rule.allows(resource_type, action)]

    def has(self, scope: str) -> bool:
        return scope in self.other


class ScopeError(ValueError):
    """A requested scope that is malformed or names no resource type (``invalid_scope``)."""


def _largest_v1(actions: str) -> str:
    """The most of ``actions`` that v1's read / write / ``*`` can say."""
    kept = "".join(a for a in ACTIONS if (a in "rs" and {"r", "s"} <= set(actions))
                   or (a in "cud" and {"c", "u", "d"} <= set(actions)))
    return kept


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
    return ScopeRule(context, resource_type, actions, constraints, permissions in V1_ACTIONS)
