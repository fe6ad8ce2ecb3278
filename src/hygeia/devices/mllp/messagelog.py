"""The HL7 v2 message log: every inbound message kept raw, with a searchable record.

Each message is stored twice over, under one id:

- ``Binary/{id}``: the bytes exactly as received, ``contentType``
  ``x-application/hl7-v2+er7``;
- ``MessageHeader/{id}``: the record, searchable over FHIR:

  ======================  ==========================================================
  ``eventCoding``         the trigger event, system ``v2-0003`` (``A01``, ``R01``),
                          the message type (``ADT^A01``) as its display; search
                          ``event=R01``
  extension message-type  ``MSH-9.1`` as a Coding of ``v2-0076`` (``ADT``, ``ORU``)
  ``source.name``         the sender, ``MSH-3|MSH-4``; search ``source=``
  ``source.endpoint``     the peer's address, ``mllp://host:port``
  ``destination``         ``MSH-5|MSH-6`` and this listener's address
  ``response.identifier`` the inbound ``MSH-10`` (characters an ``id`` cannot hold
                          become ``-``; the exact value is extension control-id);
                          search ``response-id=``
  ``response.code``       ``ok``, ``transient-error`` (our fault: the same message may
                          succeed later) or ``fatal-error`` (the message is wrong);
                          search ``code=``
  ``response.details``    a contained OperationOutcome: the error (with the ``ERR-2``
                          location in ``issue.location`` and the table 0357 code) and
                          the handler's notes, as ``information`` issues
  ``focus``               the Binary, then every resource the handler wrote
  extension received-at   when the message arrived (``valueInstant``);
                          ``meta.lastUpdated`` is when the record was last written
  extension acknowledgement  each ACK sent, in ER7, in order: a repeat of the same
                          ``MSH-10`` from the same sender is answered with them again
  ======================  ==========================================================

The id is the first 32 hex digits of the SHA-256 of sender and ``MSH-10``
(:func:`record_id`), so a repeated message finds its record instead of
storing anything twice; bytes that are not HL7 at all get one from their
own hash (:func:`unparsed_id`). Extension URLs start ``urn:hygeia:hl7v2:``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from hygeia.devices.mllp.acks import ERROR_CODES, Failure
from hygeia.devices.mllp.outcomes import EXTENSION, FATAL, OK, TRANSIENT
from hygeia.server.rest import write
from hygeia.store import Head, Session

CONTENT_TYPE = "x-application/hl7-v2+er7"
EVENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0003"
MESSAGE_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0076"
ERROR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0357"
UNPARSED_EVENT = {"system": f"{EXTENSION}event", "code": "unparsed",
                  "display": "not an HL7 v2 message"}
_NOT_ID = re.compile(r"[^A-Za-z0-9\-.]")


def record_id(sender: str, control_id: str) -> str:
    """The log id of the message ``control_id`` (``MSH-10``) from ``sender``."""
    return hashlib.sha256(f"{sender}\n{control_id}".encode()).hexdigest()[:32]


def unparsed_id(raw: bytes) -> str:
    """The log id of bytes that are not an HL7 message (the same bytes, the same id)."""
    return hashlib.sha256(b"unparsed\n" + raw).hexdigest()[:32]


def outcome_code(code: str, failure: Failure | None) -> str:
    """``response.code`` for an application outcome AA/AE/AR."""
    if code == "AA":
        return OK
    return TRANSIENT if failure is not None and failure.transient else FATAL


@dataclass(slots=True)
class Entry:
    """One message as the log records it."""

    id: str
    raw: bytes
    received_at: datetime
    peer: str  # mllp://host:port of the sender's connection ("" when reprocessed)
    listener: str = ""  # mllp://host:port of this server's listener
    sender: str = ""  # MSH-3|MSH-4
    receiver: str = ""  # MSH-5|MSH-6
    control_id: str = ""  # MSH-10
    message_type: str = ""  # MSH-9.1^MSH-9.2
    outcome: str = OK
    failure: Failure | None = None
    notes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)


def heads_of(session: Session, id: str) -> dict[tuple[str, str], Head]:
    """The heads of the Binary and the record ``id`` (one query for both)."""
    return session.heads([("Binary", id), ("MessageHeader", id)])


def heads_of_all(session: Session, ids: list[str]
                 ) -> dict[str, dict[tuple[str, str], Head]]:
    """:func:`heads_of` for many messages, in one statement: every id is a key, with no
    heads when nothing of it is stored."""
    heads = session.heads([(kind, id) for id in ids for kind in ("Binary", "MessageHeader")])
    found: dict[str, dict[tuple[str, str], Head]] = {id: {} for id in ids}
    for key, head in heads.items():
        found[key[1]][key] = head
    return found


def store(session: Session, entry: Entry,
          heads: dict[tuple[str, str], Head] | None = None) -> None:
    """Write the Binary (once: it never changes) and the record (a new version when it
    exists: a reprocess, or a retry after a transient error).

    One look-up of both heads (``heads``: that look-up, made by the caller in this
    transaction); what was never stored is created without the read an update makes
    (most messages are new: this saves three reads of each)."""
    if heads is None:
        heads = heads_of(session, entry.id)
    if ("Binary", entry.id) not in heads:
        # valid by construction (a hex id, a fixed type, base64 of some bytes): not walked
        # by the validator, unless empty (an empty ``data`` is invalid FHIR, so refused)
        write.create(session, "Binary", raw_binary(entry), id=entry.id,
                     validated=bool(entry.raw))
    header = message_header(entry)
    if ("MessageHeader", entry.id) in heads:
        write.update(session, "MessageHeader", entry.id, header)
    else:
        write.create(session, "MessageHeader", header, id=entry.id)


def raw_binary(entry: Entry) -> dict[str, Any]:
    """The message's bytes as received, as a Binary (module docstring)."""
    return {"resourceType": "Binary", "id": entry.id, "contentType": CONTENT_TYPE,
            "data": base64.b64encode(entry.raw).decode("ascii")}


def message_header(entry: Entry) -> dict[str, Any]:
    """The record of ``entry`` as a MessageHeader (module docstring)."""
    resource: dict[str, Any] = {"resourceType": "MessageHeader", "id": entry.id,
                                "extension": _extensions(entry)}
    issues = _issues(entry)
    if issues:
        resource["contained"] = [{"resourceType": "OperationOutcome", "id": "outcome",
                                  "issue": issues}]
    resource["eventCoding"] = _event(entry.message_type)
    if entry.listener:
        resource["destination"] = [{"name": entry.receiver or "-", "endpoint": entry.listener}]
    resource["source"] = {"name": entry.sender or "-",
                          "endpoint": entry.peer or "urn:hygeia:hl7v2:unknown-peer"}
    response: dict[str, Any] = {"identifier": response_identifier(entry.control_id),
                                "code": entry.outcome}
    if issues:
        response["details"] = {"reference": "#outcome"}
    resource["response"] = response
    resource["focus"] = [{"reference": reference}
                         for reference in [f"Binary/{entry.id}", *entry.written]]
    return resource


def response_identifier(control_id: str) -> str:
    """``MSH-10`` as an ``id`` (what ``response-id`` searches): ``MSG 1`` is ``MSG-1``."""
    return _NOT_ID.sub("-", control_id)[:64] or "unknown"


def _extensions(entry: Entry) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"url": f"{EXTENSION}received-at", "valueInstant": _instant(entry.received_at)}]
    kind = entry.message_type.split("^", 1)[0]
    if kind:
        found.append({"url": f"{EXTENSION}message-type",
                      "valueCoding": {"system": MESSAGE_TYPE_SYSTEM, "code": kind}})
    if entry.control_id:
        found.append({"url": f"{EXTENSION}control-id", "valueString": entry.control_id})
    found.extend({"url": f"{EXTENSION}acknowledgement", "valueString": ack}
                 for ack in entry.acks)
    return found


def _event(message_type: str) -> dict[str, Any]:
    kind, _, event = message_type.partition("^")
    if event:
        return {"system": EVENT_SYSTEM, "code": event, "display": message_type}
    if kind:
        return {"system": MESSAGE_TYPE_SYSTEM, "code": kind, "display": message_type}
    return UNPARSED_EVENT


def _issues(entry: Entry) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = []
    failure = entry.failure
    if failure is not None:
        issue: dict[str, Any] = {
            "severity": "error",
            "code": "transient" if failure.transient else "processing",
            "details": {"coding": [{"system": ERROR_SYSTEM, "code": failure.hl7_code,
                                    "display": ERROR_CODES.get(failure.hl7_code, "")}],
                        "text": failure.text}}
        if failure.diagnostic:
            issue["diagnostics"] = failure.diagnostic
        if failure.location:
            issue["location"] = [failure.location]
        issues.append(issue)
    issues.extend({"severity": "information", "code": "informational", "diagnostics": note}
                  for note in entry.notes)
    return issues


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Logged:
    """A record read back: what a repeat or a reprocess needs of it."""

    id: str
    outcome: str
    acks: list[str]
    raw: bytes
    received_at: datetime
    resource: dict[str, Any]


def find(session: Session, id: str,
         heads: dict[tuple[str, str], Head] | None = None) -> Logged | None:
    """The logged message ``id`` (record and raw bytes), or None. With ``heads``
    (:func:`heads_of` in this transaction) a message never logged costs no read."""
    if heads is not None:
        head = heads.get(("MessageHeader", id))
        if head is None or head.deleted:
            return None
    record = session.current("MessageHeader", id)
    if record is None or record.deleted or record.content is None:
        return None  # a new message: its Binary is not read
    binary = session.current("Binary", id)
    if binary is None or binary.content is None:
        return None
    resource = orjson.loads(record.content)
    extensions = resource.get("extension", [])
    received = next((ext["valueInstant"] for ext in extensions
                     if ext.get("url") == f"{EXTENSION}received-at"), None)
    return Logged(
        id=id, outcome=resource.get("response", {}).get("code", ""),
        acks=[ext["valueString"] for ext in extensions
              if ext.get("url") == f"{EXTENSION}acknowledgement"],
        raw=base64.b64decode(orjson.loads(binary.content).get("data", "")),
        received_at=datetime.fromisoformat(received) if received else datetime.now(UTC),
        resource=resource)
