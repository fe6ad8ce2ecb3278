"""ORU^R01: observation results, from bedside devices (IHE PCD-01) or lab analysers.

The handler reads the message's order groups (each OBR and the OBX rows after
it), finds the patient (:mod:`.attribution`), maps the results with
:mod:`.pcd01` or :mod:`.lab`, and writes every resource through
:func:`.writing.upsert` inside the caller's transaction. A message is PCD-01
when MSH-21 names an IHE PCD profile or any OBX-3 is coded in MDC.

The ADT handlers know who was in which bed when (:func:`.adt.patient_in_bed`);
the registered handler asks them when PID is sparse.

Off the writer's turn: a listener calls :meth:`OruHandler.prebuild` on the
connection's thread before the transaction. It parses the order groups and, for a
PCD-01 message whose patient the handler has attributed before (by the same PID-3,
or else the same bed), maps the Observations for that patient, validates them and
extracts their index rows. In the transaction the handler attributes the message
as always (under its locks, from what the batch read) and uses what was built only
if that attribution names the same subject with the same note: the Observations
depend on nothing else that the database holds (the device levels are made from the
message; whether each resource is new, changed or unchanged is decided in the
transaction, :func:`.writing.upsert_all`). Otherwise it maps the message again
there, as it did before (ADR "devices: build an HL7 v2 message off SQLite's
writer's turn").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import hl7

from hygeia.devices.hl7v2 import adt, lab, pcd01
from hygeia.devices.hl7v2.attribution import (
    Attribution,
    BedLookup,
    attribute,
    bed_of,
    criteria_lock,
    pid3_of,
)
from hygeia.devices.hl7v2.handling import Handled, Handler, Received, Rejected
from hygeia.devices.hl7v2.hl7time import FhirTime, fhir_datetime
from hygeia.devices.hl7v2.obx import Obx, read_obx
from hygeia.devices.hl7v2.segments import first, named, part, repetition_count
from hygeia.devices.hl7v2.writing import Remembered, index_rows, upsert, upsert_all, valid
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.store import PreparedRows, Session

PCD_PROFILE_OID = "1.3.6.1.4.1.19376.1.6.1.1.1"  # IHE PCD-01 (DEC), MSH-21.3
MAX_OBX = 5_000  # OBX rows in one message; more is refused rather than half-processed
MAX_GUESSES = 10_000  # patients (PID-3 criteria or beds) a handler remembers (all beyond: none)
GROUPS = "oru-groups"  # Received.derived keys: order_groups(message), built beforehand,
PREBUILT = "oru-prebuilt"  # and the Prebuilt


@dataclass(frozen=True, slots=True)
class Prebuilt:
    """A PCD-01 message's resources as built off the writer's turn for the patient its
    handler last found for the same PID-3 (or bed): used in the transaction only if
    the attribution made there agrees (module docstring)."""

    subject: str | None
    note: str
    result: pcd01.Pcd01Result
    validated: frozenset[int]  # id() of the result's Observations found valid
    rows: dict[int, PreparedRows]  # their index rows by id(), extracted with
    registry: SearchRegistry | None  # this registry
    generation: int  # as it was at this generation (a change: extracted again)

    def rows_for(self, session: Session) -> dict[int, PreparedRows] | None:
        """The index rows, if extracted with ``session``'s registry as it is now."""
        registry = session.registry
        if registry is None or registry is not self.registry or \
                registry.generation != self.generation:
            return None
        return self.rows


@dataclass(slots=True)
class OrderGroup:
    """One OBR (its position among the OBRs) and the OBX rows that follow it."""

    obr: hl7.Segment | None
    obr_index: int
    rows: list[Obx] = field(default_factory=list)


def is_pcd01(message: hl7.Message, groups: list[OrderGroup]) -> bool:
    """MSH-21 names an IHE PCD profile, or an OBX-3 is coded in MDC."""
    msh = first(message, "MSH")
    if msh is not None:
        for repetition in range(1, repetition_count(msh, 21) + 1):
            if part(msh, 21, 1, repetition).upper().startswith("IHE_PCD") or \
                    part(msh, 21, 3, repetition) == PCD_PROFILE_OID:
                return True
    return any(obx.system.upper() == "MDC" for group in groups for obx in group.rows)


def order_groups(message: hl7.Message) -> list[OrderGroup]:
    """The OBR groups in message order (OBX rows before any OBR form a group of none)."""
    groups: list[OrderGroup] = []
    obr_count = obx_count = 0
    for segment in message:
        if named(segment, "OBR"):
            obr_count += 1
            groups.append(OrderGroup(segment, obr_count))
        elif named(segment, "OBX"):
            obx_count += 1
            if obx_count > MAX_OBX:
                raise Rejected(f"The message has more than {MAX_OBX} OBX segments.",
                               location=f"OBX^{obx_count}", hl7_code="207")
            if not groups:
                groups.append(OrderGroup(None, 0))
            groups[-1].rows.append(read_obx(segment, obx_count))
    if obx_count == 0:
        raise Rejected("The ORU^R01 message has no OBX segment: there is no result to store.",
                       location="OBX^1", hl7_code="101")
    return groups


class OruHandler:
    """The ORU^R01 handler, asking ``bed_lookup`` who is in a bed when PID is sparse;
    with ``remembered`` (one database's, :class:`~.writing.Remembered`), what it stored
    is not read again by the next message."""

    def __init__(self, bed_lookup: BedLookup | None = None,
                 remembered: Remembered | None = None) -> None:
        self.bed_lookup = bed_lookup
        self.remembered = remembered
        # whose patient key (PID-3 criteria, or bed) was last attributed to whom: the
        # guess prebuild maps for; wrong or stale, it costs a second mapping, never data
        self.guesses: dict[str, Attribution] = {}

    def __call__(self, received: Received, session: Session) -> Handled:
        return handle_oru_r01(received, session, self.bed_lookup, self.remembered,
                              self.guesses)

    def prebuild(self, received: Received, registry: SearchRegistry | None = None) -> None:
        """Build what can be built of ``received`` without the database, into its
        ``derived`` (module docstring), index rows too with ``registry`` (the one its
        transaction will have); nothing when anything fails: the transaction then does
        it all, raising in the order it always did."""
        try:
            groups = received.derived[GROUPS] = order_groups(received.message)
            guess = self.guesses.get(_patient_key(received))
            if guess is None or not is_pcd01(received.message, groups):
                return
            result = pcd01.observations(_rows(groups), received.sender,
                                        received.sender.split("|", 1)[0], guess)
            validated = valid(result.observations)
            generation = registry.generation if registry is not None else 0
            rows = {} if registry is None else index_rows(
                [o for o in result.observations if id(o) in validated], registry)
            received.derived[PREBUILT] = Prebuilt(guess.subject, guess.note, result,
                                                  validated, rows, registry, generation)
        except Exception:  # Rejected, or worse: found again in the transaction
            received.derived.pop(GROUPS, None)

    def locks(self, received: Received) -> list[str]:
        """Lock keys the handler takes for ``received`` (:func:`.handling.handler_locks`);
        none for a message it will refuse (it says why, in its own order)."""
        try:
            identifiers, criteria = pid3_of(received)
        except Rejected:
            return []
        return [criteria_lock(criteria)] if identifiers else []

    def patient_criteria(self, received: Received) -> str | None:
        """The PID-3 criteria the handler searches Patients by
        (:func:`.handling.handler_patients`)."""
        try:
            identifiers, criteria = pid3_of(received)
        except Rejected:
            return None
        return criteria if identifiers else None


def oru_handler(bed_lookup: BedLookup | None = None,
                remembered: Remembered | None = None) -> Handler:
    """:class:`OruHandler`."""
    return OruHandler(bed_lookup, remembered)


def handle_oru_r01(received: Received, session: Session,
                   bed_lookup: BedLookup | None = None,
                   remembered: Remembered | None = None,
                   guesses: dict[str, Attribution] | None = None) -> Handled:
    """Store an ORU^R01's results (see the module docstring); ``guesses`` learns whom
    the message was attributed to, for :meth:`OruHandler.prebuild`."""
    handled = Handled()
    groups = received.derived.get(GROUPS) or order_groups(received.message)
    application = received.sender.split("|", 1)[0]
    attribution = attribute(received.message, session, _first_time(groups), bed_lookup,
                            received.known_patients, pid3_of(received))
    if guesses is not None:
        _learn(guesses, _patient_key(received), attribution)
    if attribution.new_patient is not None:
        upsert(session, attribution.new_patient, handled, location="PID^1^3",
               remembered=remembered)
    if attribution.subject is None:
        handled.notes.append(attribution.note)
    if is_pcd01(received.message, groups):
        _store_pcd01(received, session, groups, application, attribution, handled,
                     remembered)
    else:
        _store_lab(session, groups, application, attribution, handled, remembered)
    return handled


def _store_pcd01(received: Received, session: Session, groups: list[OrderGroup],
                 application: str, attribution: Attribution, handled: Handled,
                 remembered: Remembered | None) -> None:
    prebuilt: Prebuilt | None = received.derived.get(PREBUILT)
    validated: frozenset[int] = frozenset()
    rows = None
    if prebuilt is not None and prebuilt.subject == attribution.subject and \
            prebuilt.note == attribution.note:
        result, validated, rows = prebuilt.result, prebuilt.validated, \
            prebuilt.rows_for(session)
    else:  # none built, or for another patient than the transaction found: map here
        result = pcd01.observations(_rows(groups), received.sender, application, attribution)
    # Everything written here hangs off the monitors named (ids derive from their keys):
    # messages from the same monitors take turns.
    monitors = sorted({r["identifier"][0]["value"] for r in result.devices.values()
                       if r["resourceType"] == "Device" and "parent" not in r})
    upsert_all(session, [(device, "OBX") for device in _parents_first(result.devices)]
               + [(observation, result.origins[observation["id"]])
                  for observation in result.observations], handled,
               lock="mds:" + ",".join(monitors) if monitors else f"sender:{received.sender}",
               remembered=remembered, validated=validated, rows=rows)
    handled.notes.extend(result.notes)


def _rows(groups: list[OrderGroup]) -> list[tuple[Obx, FhirTime | None]]:
    """Every OBX row with its order's OBR-7 time, as :func:`.pcd01.observations` takes them."""
    return [(obx, _obr_time(group)) for group in groups for obx in group.rows]


def _patient_key(received: Received) -> str:
    """What a message's patient is found by: its PID-3 criteria, else its bed."""
    identifiers, criteria = pid3_of(received)
    return f"pid-3:{criteria}" if identifiers else f"bed:{bed_of(received.message)}"


def _learn(guesses: dict[str, Attribution], key: str, attribution: Attribution) -> None:
    """Remember whom ``key`` was attributed to (a Patient created now exists from the
    commit on: the guess is the subject alone). Learned before the commit: a guess is
    only ever checked, so one that a rollback makes wrong costs a mapping, no more."""
    guess = guesses.get(key)
    if guess is not None and guess.subject == attribution.subject and \
            guess.note == attribution.note:
        return
    if len(guesses) >= MAX_GUESSES:
        guesses.clear()
    guesses[key] = Attribution(attribution.subject, attribution.note)


def _store_lab(session: Session, groups: list[OrderGroup], application: str,
               attribution: Attribution, handled: Handled,
               remembered: Remembered | None) -> None:
    for group in groups:
        if group.obr is None:
            raise Rejected("Lab results (OBX) must follow an OBR that says what was ordered.",
                           location="OBR^1", hl7_code="101")
        results = [lab.observation(obx, group.obr, group.obr_index, application,
                                   attribution.subject, handled.notes) for obx in group.rows]
        report = lab.report(group.obr, group.obr_index, results, application,
                            attribution.subject)
        upsert_all(session, [*((observation, f"OBX^{obx.index}") for observation, obx
                               in zip(results, group.rows, strict=True)),
                             (report, f"OBR^{group.obr_index}")], handled,
                   lock=f"order:{report['id']}", remembered=remembered)


def _parents_first(resources: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    """Devices before the devices and metrics that reference them (MDS, VMD, channel,
    metric), so referential integrity holds at every write."""
    order = {"Device": 0, "DeviceMetric": 1}
    return sorted(resources.values(), key=lambda r: (order[str(r["resourceType"])],
                                                     "parent" in r))


def _obr_time(group: OrderGroup) -> FhirTime | None:
    if group.obr is None or not part(group.obr, 7):
        return None
    time = fhir_datetime(part(group.obr, 7))
    if time is None:
        raise Rejected(f"OBR-7 of OBR {group.obr_index} ({part(group.obr, 7)!r}) is not an "
                       f"HL7 date/time.", location=f"OBR^{group.obr_index}^7", hl7_code="102")
    return time


def _first_time(groups: list[OrderGroup]) -> str | None:
    for group in groups:
        for obx in group.rows:
            if obx.time is not None:
                return obx.time.value
        time = _obr_time(group)
        if time is not None:
            return time.value
    return None


def patient_in_bed(session: Session, bed: str, at: str | None) -> str | None:
    """Who was in ``bed`` at ``at`` (a FHIR dateTime; None: now), by the ADT handlers'
    record of bed stays."""
    moment = datetime.now(UTC) if at is None else \
        datetime.fromtimestamp(fhir_datetime_range(at)[0] / 1_000_000, UTC)
    return adt.patient_in_bed(session, bed, moment)


HANDLES: dict[str, Handler] = {"ORU^R01": oru_handler(patient_in_bed)}


def handles() -> dict[str, Handler]:
    """As :data:`HANDLES`, with a handler that remembers what it stored: for one
    listener, whose handlers serve one database."""
    return {"ORU^R01": oru_handler(patient_in_bed, Remembered())}
