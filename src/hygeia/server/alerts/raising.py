"""Raising and clearing an alert: a Flag, a Communication and an acknowledgement Task.

Both functions run inside the caller's write transaction and never commit, so
an alert commits (or rolls back) with whatever caused it, e.g. the stored
Observation or the event consumer's cursor. The key is locked for the rest of
the transaction (``Session.lock``), so two processes raising the same key at
once make one alert.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import orjson

from hygeia.fhir.datetime import fhir_datetime_range, format_instant, now_us
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.resources import new_id
from hygeia.fhir.search.parameters import default_registry
from hygeia.fhir.search.query import ParameterClause, parse_query
from hygeia.fhir.search.values import TokenValue
from hygeia.server.alerts.careteam import Recipients, recipients_for, recipients_of
from hygeia.server.alerts.model import (
    ACKNOWLEDGE,
    COMMUNICATION_CATEGORY,
    ESCALATE_AFTER,
    ESCALATION_LEVEL,
    KEY_SYSTEM,
    MAX_ESCALATIONS,
    TASK_CODES,
    UNACKNOWLEDGED,
    Alert,
    AlertState,
    Raised,
    check_key,
)
from hygeia.server.context import AlertSettings
from hygeia.server.rest import write
from hygeia.store import Session, StoredVersion

KEYS_PER_SEARCH = 200  # alert keys OR-ed in one search by active_keys
FLAGS_PER_SEARCH = 500  # Flags listed in one Task?focus= search (one IN list in SQL)


def raise_alert(session: Session, alert: Alert, settings: AlertSettings) -> Raised:
    """Make ``alert`` known, once while its condition persists.

    A first raise stores a Flag (active, ``identifier`` = the key), a Task asking
    the care team to acknowledge it (intent order, status requested, due by
    ``restriction.period.end``) and a Communication to the care team about both.
    Raising a key whose Flag is still active writes nothing and returns
    ``created=False`` with the existing ids.
    """
    session.lock(f"alert:{alert.key}")
    active = _active_flag(session, alert.key)
    if active is not None:
        task = _open_task(session, alert.key, active)
        return Raised(active.id, task, None, created=False)
    return _raise_new(session, alert, settings,
                      recipients_for(session, alert.subject, settings))


def _raise_new(session: Session, alert: Alert, settings: AlertSettings,
               recipients: Recipients) -> Raised:
    """Store the Flag, Task and Communication of an alert not active now."""
    now = now_us()
    flag_id, task_id, communication_id = new_id(), new_id(), new_id()
    after = alert.escalate_after or settings.escalate_after_seconds
    _create(session, "Flag", flag_id, _flag(alert, now))
    _create(session, "Task", task_id, _task(alert, flag_id, recipients, now, after))
    _create(session, "Communication", communication_id,
            communication(alert.subject, alert.priority, alert.text, recipients.first,
                          about=[f"Flag/{flag_id}", f"Task/{task_id}",
                                 *([alert.source] if alert.source else [])],
                          sender=alert.flag_author, note=recipients.note,
                          identifier=f"{alert.key}#0", now=now))
    return Raised(flag_id, task_id, communication_id, created=True)


def clear_alert(session: Session, key: str) -> bool:
    """End the condition ``key`` names: its Flag becomes inactive with ``period.end``, its
    Task is cancelled when nobody acknowledged it and completed when someone did. False
    when the key has no active Flag (clearing twice is harmless)."""
    check_key(key)
    session.lock(f"alert:{key}")
    active = _active_flag(session, key)
    if active is None:
        return False
    now = format_instant(now_us())
    _end_flag(session, active, now)
    task_id = _open_task(session, key, active)
    if task_id is not None:
        _close_task(session, task_id, now)
    return True


def is_active(session: Session, key: str) -> bool:
    """Whether the condition ``key`` names has an active Flag (any session, a reader's
    too: a caller can learn there is nothing to clear without taking the write lock)."""
    check_key(key)
    return _active_flag(session, key) is not None


def active_keys(session: Session, keys: Collection[str]) -> set[str]:
    """Those of ``keys`` that have an active Flag, read with one search per
    ``KEYS_PER_SEARCH`` keys (:func:`is_active` reads one key per search): for a
    consumer that checks the alerts of a whole batch of subjects at once."""
    return set(_active_flags(session, {check_key(key) for key in keys}))


def read_alerts(session: Session, keys: Collection[str]) -> AlertState:
    """Lock ``keys`` and read which of them are active (a search per ``KEYS_PER_SEARCH``
    keys); :func:`active_keys` reads the same without the lock."""
    wanted = {check_key(key) for key in keys}
    session.lock_all([f"alert:{key}" for key in wanted])
    return AlertState(wanted, _active_flags(session, wanted) if wanted else {})


def _locked_flags(session: Session, keys: set[str], state: AlertState | None
                  ) -> dict[str, StoredVersion]:
    """The active Flags of ``keys``, locked: from ``state`` when it covers them, else
    locked and read now."""
    if state is not None and state.covers(keys):
        return {key: state.flags[key] for key in keys if key in state.flags}
    session.lock_all([f"alert:{key}" for key in keys])
    return _active_flags(session, keys)


def raise_alerts(session: Session, alerts: Collection[Alert], settings: AlertSettings,
                 state: AlertState | None = None) -> list[Raised]:
    """:func:`raise_alert` for many alerts (distinct keys) in one go: the keys locked, their
    Flags read with a search per ``KEYS_PER_SEARCH`` keys (or taken from ``state`` when
    it covers the keys), the active ones' Tasks with a search per ``FLAGS_PER_SEARCH``,
    the subjects' care teams together; what is written is what :func:`raise_alert`
    writes for each."""
    by_key = {check_key(alert.key): alert for alert in alerts}
    if not by_key:
        return []
    active = _locked_flags(session, set(by_key), state)
    if state is not None:
        state.forget(by_key)
    tasks = _open_tasks(session, active)
    teams = recipients_of(session, {alert.subject for key, alert in by_key.items()
                                    if key not in active}, settings)
    raised = []
    for key, alert in by_key.items():
        if key in active:
            task = tasks.get(key)
            raised.append(Raised(active[key].id, task.id if task else None, None,
                                 created=False))
        else:
            raised.append(_raise_new(session, alert, settings, teams[alert.subject]))
    return raised


def clear_alerts(session: Session, keys: Collection[str], state: AlertState | None = None
                 ) -> set[str]:
    """:func:`clear_alert` for many keys in one go (the keys locked, their Flags read with
    a search per ``KEYS_PER_SEARCH`` keys or taken from ``state`` when it covers the
    keys, their Tasks with a search per ``FLAGS_PER_SEARCH``); the keys that were
    active."""
    wanted = {check_key(key) for key in keys}
    if not wanted:
        return set()
    active = _locked_flags(session, wanted, state)
    if state is not None:
        state.forget(wanted)
    if not active:
        return set()
    tasks = _open_tasks(session, active)
    now = format_instant(now_us())
    flags = [_ended(stored, now) for stored in active.values()]
    for result in write.update_all(session, "Flag", flags):
        if isinstance(result, FhirError):
            raise result
    # the Tasks locked in one round trip; one a clinician changed since the search is
    # read again
    heads = session.heads([("Task", task.id) for task in tasks.values()], for_update=True)
    closing = []
    for task in tasks.values():
        head = heads.get(("Task", task.id))
        if head is None or head.deleted:
            continue
        current = task if head.version == task.version else session.current("Task", task.id)
        closed = _closed(orjson.loads(current.content or b"{}") if current else {}, now)
        if closed is not None:
            closing.append(closed)
    for result in write.update_all(session, "Task", closing):
        if isinstance(result, FhirError):
            raise result
    return set(active)


def _active_flags(session: Session, keys: set[str]) -> dict[str, StoredVersion]:
    """The active Flag of each of ``keys`` that has one (the newest by period start,
    should a key have two).

    Every Flag of the keys is read (``Flag?identifier=...``: one per raise of a key), in
    no order, and the active one chosen here. A key has at most one active Flag of its
    own making (raising is serialised by the key's lock and raises only when none is
    active); one a clinician set active again counts too, so it is the one cleared.
    Sorting by ``date`` in SQL, as before, made PostgreSQL's store count the matches
    before reading them (ADR 0026's date walk), one statement more per search in the
    NEWS2 engine's write transaction. (R4 defines no ``status`` search parameter on
    Flag, so the inactive Flags cannot be left out in SQL.)"""
    newest: dict[str, tuple[tuple[int, int], StoredVersion]] = {}
    for key, stored, flag in _keyed(session, "Flag", keys):
        if flag.get("status") != "active":
            continue
        rank = (_instant((flag.get("period") or {}).get("start")), stored.last_updated)
        if key not in newest or rank > newest[key][0]:
            newest[key] = (rank, stored)
    return {key: stored for key, (_, stored) in newest.items()}


def _open_tasks(session: Session, flags: dict[str, StoredVersion]) -> dict[str, StoredVersion]:
    """The acknowledgement Task of each active Flag of ``flags`` (by key): the Task the
    raise stored beside the Flag, ``Task?focus=Flag/...`` with the key as its identifier
    (a list of references is one ``IN`` in SQL, no sort; the newest by ``authoredOn``
    should a key have two)."""
    newest: dict[str, tuple[tuple[int, int], StoredVersion]] = {}
    key_of_flag = {f"Flag/{stored.id}": key for key, stored in flags.items()}
    focused = sorted(key_of_flag)
    for start in range(0, len(focused), FLAGS_PER_SEARCH):
        focus = ",".join(focused[start:start + FLAGS_PER_SEARCH])
        for stored in _every_match(session, "Task", [("focus", focus)]):
            task = orjson.loads(stored.content or b"{}")
            key = key_of_flag.get((task.get("focus") or {}).get("reference") or "")
            if key is None or _key_of(task, (key,)) is None:
                continue  # another Task about the Flag (a clinician's)
            rank = (_instant(task.get("authoredOn")), stored.last_updated)
            if key not in newest or rank > newest[key][0]:
                newest[key] = (rank, stored)
    return {key: stored for key, (_, stored) in newest.items()}


def _keyed(session: Session, resource_type: str, keys: set[str]
           ) -> Iterator[tuple[str, StoredVersion, dict[str, Any]]]:
    """Each resource of ``resource_type`` whose identifier is one of ``keys``, with its
    key and content: a search per ``KEYS_PER_SEARCH`` keys."""
    ordered = sorted(keys)
    for start in range(0, len(ordered), KEYS_PER_SEARCH):
        chunk = ordered[start:start + KEYS_PER_SEARCH]
        for stored in _every_match(session, resource_type, [],
                                   _identifier_is(session, resource_type, chunk)):
            resource = orjson.loads(stored.content or b"{}")
            key = _key_of(resource, keys)
            if key is not None:
                yield key, stored, resource


def _every_match(session: Session, resource_type: str, params: list[tuple[str, str]],
                 clause: ParameterClause | None = None) -> Iterator[StoredVersion]:
    """Every match of a search, page after page: sorted by ``_id`` (a column of the
    resource row, so nothing is counted first, as a sort by a date is on PostgreSQL,
    ADR 0026; and unlike no sort at all, one statement a page) and none left out (no
    ``_count`` that could drop the one wanted)."""
    cursor: str | None = None
    while True:
        query = parse_query(resource_type, [*params, ("_sort", "_id"), ("_count", "1000"),
                                            ("_total", "none"),
                                            *([("_cursor", cursor)] if cursor else [])],
                            registry=session.registry)
        if clause is not None:
            query.clauses.append(clause)
        page = session.search(query)
        yield from page.matches
        cursor = page.next_cursor
        if not cursor:
            return


def _key_of(resource: dict[str, Any], keys: Collection[str]) -> str | None:
    """The alert key among ``keys`` that is the resource's identifier, if any."""
    for identifier in resource.get("identifier") or []:
        key = identifier.get("value")
        if identifier.get("system") == KEY_SYSTEM and key in keys:
            return str(key)
    return None


def _instant(text: Any) -> int:
    """A FHIR dateTime as microseconds (its start), for choosing the newest; 0 when
    absent or not a date."""
    try:
        return fhir_datetime_range(text)[0] if isinstance(text, str) else 0
    except FhirError:
        return 0


def _end_flag(session: Session, stored: StoredVersion, now: str) -> None:
    write.update(session, "Flag", stored.id, _ended(stored, now))


def _ended(stored: StoredVersion, now: str) -> dict[str, Any]:
    """The Flag made inactive, ending ``now``."""
    flag = orjson.loads(stored.content or b"{}")
    flag["status"] = "inactive"
    flag.setdefault("period", {})["end"] = now
    return dict(flag)


def _close_task(session: Session, task_id: str, now: str) -> None:
    stored = session.current("Task", task_id, for_update=True)
    if stored is None or stored.deleted:
        return
    task = _closed(orjson.loads(stored.content or b"{}"), now)
    if task is not None:
        write.update(session, "Task", task_id, task)


def _closed(task: dict[str, Any], now: str) -> dict[str, Any] | None:
    """The Task closed now the condition ended: cancelled when nobody acknowledged it,
    completed when someone had; None when a clinician already closed it."""
    if task.get("status") in UNACKNOWLEDGED:
        task["status"] = "cancelled"
        task["statusReason"] = {"text": "The condition ended before anyone acknowledged it."}
    elif task.get("status") in ("accepted", "in-progress", "ready", "on-hold"):
        task["status"] = "completed"
    else:
        return None  # completed, cancelled, rejected ... already: leave the clinician's word
    task["lastModified"] = now
    return task


def communication(subject: str, priority: str, text: str, recipients: tuple[str, ...], *,
                  about: list[str], sender: str | None, note: str | None, identifier: str,
                  now: int) -> dict[str, Any]:
    """The Communication that tells ``recipients`` of an alert (or of its escalation).

    Status completed: storing it *is* the notice (applications learn of it by a
    Subscription on ``Communication?recipient=...``); Hygeia does not page anyone.
    """
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": KEY_SYSTEM, "value": identifier}],
        "status": "completed",
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert",
                                  "display": "Alert"}]}],
        "priority": priority,
        "subject": {"reference": subject},
        "about": [{"reference": reference} for reference in about],
        "sent": format_instant(now),
        "payload": [{"contentString": text}],
    }
    if recipients:
        resource["recipient"] = [{"reference": reference} for reference in recipients]
    if sender:
        resource["sender"] = {"reference": sender}
    if note:
        resource["note"] = [{"text": note}]
    return resource


def _flag(alert: Alert, now: int) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "identifier": [{"system": KEY_SYSTEM, "value": alert.key}],
        "status": "active",
        "category": [alert.category],
        "code": alert.code,
        "subject": {"reference": alert.subject},
        "period": {"start": format_instant(now)},
    }
    if alert.flag_author:
        flag["author"] = {"reference": alert.flag_author}
    return flag


def _task(alert: Alert, flag_id: str, recipients: Recipients, now: int, after: float
          ) -> dict[str, Any]:
    extensions: list[dict[str, Any]] = [{"url": ESCALATION_LEVEL, "valueInteger": 0},
                                        {"url": ESCALATE_AFTER, "valueDecimal": after}]
    if alert.max_escalations is not None:
        extensions.append({"url": MAX_ESCALATIONS, "valueInteger": alert.max_escalations})
    task: dict[str, Any] = {
        "resourceType": "Task",
        "extension": extensions,
        "identifier": [{"system": KEY_SYSTEM, "value": alert.key}],
        "status": "requested",
        "intent": "order",
        "priority": alert.priority,
        "code": {"coding": [{"system": TASK_CODES, "code": ACKNOWLEDGE,
                             "display": "Acknowledge alert"}]},
        "description": alert.text,
        "focus": {"reference": f"Flag/{flag_id}"},
        "for": {"reference": alert.subject},
        "authoredOn": format_instant(now),
        "lastModified": format_instant(now),
        "restriction": {"period": {"end": format_instant(now + int(after * 1_000_000))}},
    }
    if alert.flag_author:
        task["requester"] = {"reference": alert.flag_author}
    if recipients.owner:
        task["owner"] = {"reference": recipients.owner}
    return task


def _create(session: Session, resource_type: str, id: str, resource: dict[str, Any]) -> None:
    write.create(session, resource_type, resource, id=id)


def _active_flag(session: Session, key: str) -> StoredVersion | None:
    """The key's active Flag, if any (see :func:`_active_flags`)."""
    return _active_flags(session, {key}).get(key)


def _open_task(session: Session, key: str, flag: StoredVersion) -> str | None:
    """The acknowledgement Task of the key's active ``flag``, if any."""
    task = _open_tasks(session, {key: flag}).get(key)
    return task.id if task else None


def _identifier_is(session: Session, resource_type: str, keys: list[str]) -> ParameterClause:
    """``identifier=`` any of ``keys`` in :data:`KEY_SYSTEM`: the clause a search parses
    from their escaped tokens (:func:`~.model.key_token`), built directly. A consumer
    asks about a batch's keys at once, and escaping, joining and parsing those back
    was two thirds of the device-alarm consumer's search time (py-spy, issue 16)."""
    parameter = (session.registry or default_registry()).get(resource_type, "identifier")
    assert parameter is not None  # Flag and Task both have it
    return ParameterClause(parameter, None, tuple(TokenValue(KEY_SYSTEM, key) for key in keys))
