"""What an alert is, as a caller describes it, and the codes its resources carry."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hygeia.fhir.outcome import BadRequest

if TYPE_CHECKING:
    from hygeia.store import StoredVersion

# the dedup key, as Flag.identifier and Task.identifier (system|value)
KEY_SYSTEM = "urn:hygeia:alert"
# Task.code of the acknowledgement Task (no R4 task-code fits "acknowledge an alert")
TASK_CODES = "urn:hygeia:codesystem:alert"
ACKNOWLEDGE = "acknowledge"
# CareTeam.participant.role coding that marks the next level of escalation
ESCALATION_ROLE = "escalation"
# Task extensions the escalator keeps: how many escalations so far, and the period
ESCALATION_LEVEL = "urn:hygeia:extension:alert-escalation-level"
ESCALATE_AFTER = "urn:hygeia:extension:alert-escalate-after"
MAX_ESCALATIONS = "urn:hygeia:extension:alert-max-escalations"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
# request-priority, lowest first: each escalation moves the Task one step up
PRIORITIES = ("routine", "urgent", "asap", "stat")
# Task statuses that mean "nobody has acknowledged it yet": everything else stops escalation
UNACKNOWLEDGED = ("requested", "received")
MAX_KEY_LENGTH = 256


def clinical_category() -> dict[str, Any]:
    return {"coding": [{"system": FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}]}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert condition, as a pillar raises it.

    ``key`` identifies the condition while it persists (``"device-offline|gw-7"``,
    ``"news2-high|Patient/1"``): raising the same key again while its Flag is active
    changes nothing, so a caller may raise on every reading. Put the subject in the key
    when the condition is per patient. ``subject`` is the reference the Flag is about
    (``Patient/1``; a Location, Organization or Group works too, with no care team);
    ``code`` a CodeableConcept saying what happened; ``priority`` one of
    ``routine``, ``urgent``, ``asap``, ``stat``; ``source`` the Device or Observation
    that showed it; ``author`` the Flag's author (default: ``source`` when it is a
    Device); ``escalate_after`` seconds before an unacknowledged alert escalates
    (default: ``Settings.alerts.escalate_after_seconds``); ``max_escalations`` how
    many times it may escalate (0: never, e.g. a low-band score that only informs;
    default: ``Settings.alerts.max_escalations``).
    """

    key: str
    subject: str
    code: dict[str, Any]
    text: str
    priority: str = "routine"
    source: str | None = None
    author: str | None = None
    category: dict[str, Any] = field(default_factory=clinical_category)
    escalate_after: float | None = None
    max_escalations: int | None = None

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.priority not in PRIORITIES:
            raise BadRequest(f"An alert's priority must be one of {', '.join(PRIORITIES)}, "
                             f"not {self.priority!r}.", expression="priority")
        if "/" not in self.subject:
            raise BadRequest(f"An alert's subject must be a reference like Patient/1, not "
                             f"{self.subject!r}.", expression="subject")
        if self.escalate_after is not None and not self.escalate_after > 0:
            raise BadRequest("An alert's escalate_after must be a positive number of "
                             "seconds.", expression="escalate_after")
        if self.max_escalations is not None and not 0 <= self.max_escalations <= 100:
            raise BadRequest("An alert's max_escalations must be 0 to 100.",
                             expression="max_escalations")

    @property
    def flag_author(self) -> str | None:
        if self.author is not None:
            return self.author
        if self.source is not None and self.source.startswith("Device/"):
            return self.source
        return None


@dataclass(frozen=True, slots=True)
class Raised:
    """What :func:`raise_alert` found or made: the ids of the alert's Flag, Task and first
    Communication, and ``created`` (False: the key was already active, nothing written)."""

    flag: str
    task: str | None
    communication: str | None
    created: bool


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(f"An alert key is 1 to {MAX_KEY_LENGTH} printable characters.",
                         expression="key")
    return key


def key_token(key: str) -> str:
    """``system|value`` for a token search on the key, with FHIR search escaping."""
    escaped = key.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|") \
        .replace("$", "\\$")
    return f"{KEY_SYSTEM}|{escaped}"


def raised_priority(priority: str | None) -> str:
    """The next step up the request-priority ladder (stat stays stat)."""
    index = PRIORITIES.index(priority) if priority in PRIORITIES else 0
    return PRIORITIES[min(index + 1, len(PRIORITIES) - 1)]


@dataclass(slots=True)
class AlertState:
    """The active Flag of each of ``keys`` that has one, read by :func:`read_alerts` with
    the keys locked for the rest of the transaction, so it stays true until the
    transaction ends or it raises or clears one of them.

    A consumer that decides from the active keys what to raise and clear passes it on
    to :func:`raise_alerts` and :func:`clear_alerts`, which then neither lock nor read
    those keys again (three round trips and two searches fewer per batch). A key they
    raise or clear leaves ``keys``: a later call reads it afresh."""

    keys: set[str]
    flags: dict[str, StoredVersion]

    @property
    def active(self) -> set[str]:
        return set(self.flags)

    def covers(self, keys: Collection[str]) -> bool:
        return self.keys.issuperset(keys)

    def forget(self, keys: Collection[str]) -> None:
        """``keys`` were raised or cleared: their Flags as read no longer say so."""
        self.keys.difference_update(keys)
        for key in keys:
            self.flags.pop(key, None)
