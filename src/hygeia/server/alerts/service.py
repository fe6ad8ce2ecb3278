"""The alerting service a host offers (``host.alerts``), and its escalation thread.

Every serving process runs one :class:`AlertService` thread. It sleeps until the
earliest due time it knows of, or ``scan_seconds`` at most (alerts raised by
another process are found by the next scan), and is woken at once when an alert
raised in this process commits. Each overdue Task is escalated in a transaction
of its own, idempotently (server/alerts/escalation.py), so N processes on one
PostgreSQL database escalate each Task once per level.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Protocol

from hygeia.fhir.datetime import now_us
from hygeia.server.alerts.escalation import run_due, scan
from hygeia.server.alerts.model import Alert, AlertState, Raised
from hygeia.server.alerts.raising import (
    active_keys,
    clear_alert,
    clear_alerts,
    is_active,
    raise_alert,
    raise_alerts,
    read_alerts,
)
from hygeia.server.background import BackgroundLoop
from hygeia.server.context import AlertSettings, Settings
from hygeia.store import Session

log = logging.getLogger("hygeia.alerts")
MAX_BACKOFF_SECONDS = 60.0


class AlertHost(Protocol):
    """What alerting needs of the server: settings and sessions that know its search
    parameters and run its write hooks (``FhirService`` is one)."""

    settings: Settings

    def reader(self) -> AbstractContextManager[Session]: ...

    def transaction(self, *, flush_to_disk: bool = True
                    ) -> AbstractContextManager[Session]: ...


class AlertService(BackgroundLoop):
    """Raise, clear and escalate alerts with the server's ``alerts`` settings."""

    thread_name = "hygeia-alerts"

    def __init__(self, host: AlertHost) -> None:
        self._host = host
        self._timer = threading.Lock()
        self._scanning = 0  # scans under way (their snapshots may miss a new alert)
        self._next_due: int | None = None  # the last finished scan's; None: unknown
        super().__init__()

    @property
    def settings(self) -> AlertSettings:
        return self._host.settings.alerts

    def raise_alert(self, session: Session, alert: Alert) -> Raised:
        """:func:`~hygeia.server.alerts.raising.raise_alert` in ``session`` (the caller's
        write transaction); this process's escalation timer is set once it commits."""
        earliest = now_us() + self._shortest_delay([alert])
        raised = raise_alert(session, alert, self.settings)
        if raised.created:
            session.after_commit(lambda: self._wake_unless_due_before(earliest))
        return raised

    def raise_alerts(self, session: Session, alerts: Collection[Alert],
                     state: AlertState | None = None) -> list[Raised]:
        """:func:`~hygeia.server.alerts.raising.raise_alerts` in ``session``."""
        earliest = now_us() + self._shortest_delay(alerts)
        raised = raise_alerts(session, alerts, self.settings, state)
        if any(one.created for one in raised):
            session.after_commit(lambda: self._wake_unless_due_before(earliest))
        return raised

    def _shortest_delay(self, alerts: Collection[Alert]) -> int:
        """The fewest microseconds after which one of ``alerts`` can fall due."""
        default = self.settings.escalate_after_seconds
        return min((int((alert.escalate_after or default) * 1_000_000) for alert in alerts),
                   default=0)

    def _wake_unless_due_before(self, due: int) -> None:
        """Wake the escalation thread for alerts falling due at ``due`` at the earliest,
        unless the thread already wakes before then: the last scan finished and found a
        Task due no later (it scans again at that time, and finds these too).

        The NEWS2 engine raises alerts in most of its batches, each due in 15 to 60
        minutes; a scan after every one read every open acknowledgement Task again (a
        thirtieth of the server's CPU in ``benchmarks.clinical``'s stream)."""
        with self._timer:
            wanted = self._scanning or self._next_due is None or due < self._next_due
        if wanted:
            self.wake()

    def clear_alerts(self, session: Session, keys: Collection[str],
                     state: AlertState | None = None) -> set[str]:
        """:func:`~hygeia.server.alerts.raising.clear_alerts` in ``session``."""
        return clear_alerts(session, keys, state)

    def read_alerts(self, session: Session, keys: Collection[str]) -> AlertState:
        """:func:`~hygeia.server.alerts.raising.read_alerts` in ``session``."""
        return read_alerts(session, keys)

    def clear_alert(self, session: Session, key: str) -> bool:
        """:func:`~hygeia.server.alerts.raising.clear_alert` in ``session``."""
        return clear_alert(session, key)

    def is_active(self, session: Session, key: str) -> bool:
        """:func:`~hygeia.server.alerts.raising.is_active` in ``session``."""
        return is_active(session, key)

    def active_keys(self, session: Session, keys: Collection[str]) -> set[str]:
        """:func:`~hygeia.server.alerts.raising.active_keys` in ``session``."""
        return active_keys(session, keys)

    def escalate_due(self) -> tuple[int, int | None]:
        """Escalate what is due now: (how many moved, the next due time or None)."""
        with self._timer:
            self._scanning += 1
            self._next_due = None
        next_due = None
        try:
            with self._host.reader() as session:
                found = scan(session, self.settings, now_us())
            moved = run_due(self._host.transaction, self.settings, found.due)
            # escalated Tasks fall due again later; the scan did not see their new time
            next_due = found.next_due if moved == 0 else None
            return moved, found.next_due
        finally:
            with self._timer:
                self._scanning -= 1
                self._next_due = next_due

    # ------------------------------------------------------------ the escalation thread

    def run(self) -> None:
        """Escalate what is due, then sleep until the next due time (or a wake: an alert
        raised here), on a thread ``FhirService.start_jobs`` starts."""
        failures = 0
        while not self.stopping.is_set():
            try:
                _, next_due = self.escalate_due()
                failures = 0
                wait = self._wait_for(next_due)
            except Exception:  # the database may be restarting: back off, never die
                failures += 1
                wait = min(MAX_BACKOFF_SECONDS, self.settings.scan_seconds * 2 ** failures)
                log.exception("alert escalation failed; retrying in %.1f s", wait)
            self.sleep(wait)

    def _wait_for(self, next_due: int | None) -> float:
        longest = self.settings.scan_seconds
        if next_due is None:
            return longest
        return max(0.0, min(longest, (next_due - now_us()) / 1_000_000))
