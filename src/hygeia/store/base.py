"""The Repository interface every backend implements.

A repository hands out sessions.  A *transaction* session is one database
transaction: every version, deletion and index row written through it commits
together or not at all.  A *reader* session sees one consistent snapshot.
The server layer builds every FHIR interaction (conditional ones included) on
these few primitives, so backends stay small and interchangeable.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.query import Query
from hygeia.fhir.search.results import Include
from hygeia.fhir.search.rows import IndexRows

if TYPE_CHECKING:
    from hygeia.store.export_sql import ExportRow, ExportSlice


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One stored version of a resource; ``content`` is None for a deletion."""

    resource_type: str
    id: str
    version: int
    last_updated: int
    deleted: bool
    content: bytes | None
    method: str
    seq: int


CREATE, UPDATE, DELETE = "create", "update", "delete"  # ChangeEvent.interaction


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One committed version: ``interaction`` is create (version 1), delete (a deletion)
    or update (any other version); ``at`` is its lastUpdated, in microseconds since
    the epoch.  The content is not carried: read it with ``Session.version``."""

    seq: int
    resource_type: str
    id: str
    version: int
    interaction: str
    at: int


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Events after a position, and the position a consumer's cursor moves to once it
    has handled them (past the events, and past versions its type filter skipped)."""

    events: tuple[ChangeEvent, ...]
    position: int


class FeedLost(RuntimeError):
    """The cursor points before the retained history (it was purged) or after the
    newest version (the database was restored from an older backup): events are
    missing, and only the consumer knows how to rebuild (e.g. a full refresh)."""


@dataclass(frozen=True, slots=True)
class Head:
    """What a writer must know about a resource's current version to write the next one."""

    version: int
    last_updated: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class Referrer:
    """A current resource (``source``) whose indexed references point at ``target``."""

    source: tuple[str, str]
    target: tuple[str, str]


@dataclass(frozen=True, slots=True)
class PreparedRows:
    """A resource's index rows already in the side tables' form, minus the owner key.

    ``tables`` holds one tuple per index table (``store.sql.INDEX_FIELDS`` order) of
    rows without ``res_pk``, as :func:`hygeia.store.sql.prepare_rows` builds them.
    Building them (parameter hashes, token texts, composite combinations) is CPU
    work a bulk loader does in its worker processes, so the single writer only
    prepends the key.  Tuples, not lists: they cross the process boundary, and a
    tuple unpickles in half the time of a list.
    """

    tables: tuple[tuple[tuple[Any, ...], ...], ...]


# what Session.put accepts as a version's index rows
RowsSource = IndexRows | PreparedRows | Callable[[], IndexRows]


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """History at system (no type), type (no id) or instance level.

    ``since`` keeps versions written at or after it; ``at`` = (low, high) keeps
    versions that were current during that range; ``before_seq`` pages
    backwards from a cursor so pages stay stable while new versions arrive.
    """

    resource_type: str | None = None
    id: str | None = None
    since: int | None = None
    at: tuple[int, int] | None = None
    count: int = 50
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of matches; cursors are None when there is no such page."""

    total: int | None
    matches: list[StoredVersion]
    next_cursor: str | None = None
    previous_cursor: str | None = None


class Session(ABC):
    """Operations inside one database transaction (writable) or snapshot (reader).

    ``registry`` names the search parameters in force (official plus custom);
    the server sets it when it opens the session.
    """

    registry: SearchRegistry | None = None
    # set by the server when index rows may be extracted elsewhere: given a written
    # resource and its stored bytes, returns a callable that yields its rows later
    rows_later: Callable[[dict[str, Any], bytes], Callable[[], IndexRows]] | None = None
    # set by the server: called with this session and each version as it is put, inside
    # the transaction, so what it writes or raises commits or rolls back with the write
    on_put: Callable[[Session, StoredVersion], None] | None = None
    # set by the server to learn of every version the interactions write (the resource,
    # None for a deletion); referential integrity checks them before commit
    on_write: Callable[[StoredVersion, dict[str, Any] | None], None] | None = None

    @property
    def written_types(self) -> Collection[str] | None:
        """The resource types this session has put versions of (None: not known), so
        the server wakes only the change-feed consumers that want them after commit."""
        return None

    def signal(self, words: Collection[str]) -> None:
        """Tell the other processes listening on this database (``Repository.listen``)
        ``words`` once this transaction commits (nothing if it rolls back); versions
        written signal their types by themselves. A backend without listeners ignores it."""
        return None

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the transaction has committed (never if it rolls back)."""
        self.__dict__.setdefault("_after_commit", []).append(action)

    def run_after_commit(self) -> None:
        for action in self.__dict__.pop("_after_commit", []):
            action()

    @abstractmethod
    def current(self, resource_type: str, id: str, *, for_update: bool = False
                ) -> StoredVersion | None:
        """The newest version (deleted or not), or None if the id never existed."""

    @abstractmethod
    def version(self, resource_type: str, id: str, version: int) -> StoredVersion | None:
        """One specific version, or None."""

    @abstractmethod
    def put(self, version: StoredVersion, rows: RowsSource) -> None:
        """Append a version, make it current and replace its index rows.

        ``rows`` may be a callable, called once before the rows are written
        (they may still be being extracted in another process), or rows
        already prepared in the tables' form (:class:`PreparedRows`).

        Backends may buffer writes and send them in batches; anything read
        through the same session afterwards sees them, and they commit (or
        roll back) with the transaction.  ``version.seq`` is ignored: the
        store assigns it.
        """

    def heads(self, keys: list[tuple[str, str]], *, for_update: bool = False,
              for_share: bool = False) -> dict[tuple[str, str], Head]:
        """The current version's :class:`Head` of each (type, id) in ``keys`` that exists.

        One round trip for a whole batch, where :meth:`current` is one per resource
        and reads the content too.  ``for_update`` locks the rows found until the
        transaction ends (where the backend has row locks).  ``for_share`` takes a
        shared lock instead: others may read and share-lock them too, but a writer
        that updates or deletes one waits until this transaction ends (and this
        one waits for a writer already holding one), so a resource this
        transaction found alive stays alive until it commits.
        """
        found = {}
        for key in keys:
            current = self.current(*key, for_update=for_update)
            if current is not None:
                found[key] = Head(current.version, current.last_updated, current.deleted)
        return found

    def versions_of(self, events: Iterable[ChangeEvent]) -> list[StoredVersion]:
        """The version each change event names (a deletion's too), in the events' order:
        what a consumer of the change feed reads of its batch, as the event left it.
        One round trip per few thousand events where the backend can, where
        :meth:`version` is one per event."""
        found = []
        for event in events:
            stored = self.version(event.resource_type, event.id, event.version)
            if stored is not None:
                found.append(stored)
        return found

    def referrers(self, targets: list[tuple[str, str]], base_url: str, limit: int
                  ) -> list[Referrer]:
        """Up to ``limit`` (source, target) pairs where a current resource references one
        of the (type, id) ``targets``, read from the reference index of search parameters.

        A reference counts when it is relative (``Patient/1``, versioned or not) or
        absolute under ``base_url`` (``http://h/fhir/Patient/1`` with ``base_url``
        ``http://h/fhir/``); one to the same type and id on another server does not.
        References in elements that no search parameter indexes are not seen.
        This session's own writes are included (deleted resources have no rows).
        """
        raise NotImplementedError

    def flush(self) -> None:
        """Send buffered writes to the database (the repository calls it before commit)."""
        return None

    @abstractmethod
    def search(self, query: Query) -> SearchPage:
        """Current, non-deleted resources matching the query, one page of them."""

    @abstractmethod
    def history(self, query: HistoryQuery) -> list[StoredVersion]:
        """Versions newest first."""

    @abstractmethod
    def lock(self, key: str) -> None:
        """Hold an exclusive lock on ``key`` until the transaction ends.

        Serialises conditional creates with the same criteria so that concurrent
        requests cannot both see "no match" and both create.
        """

    def lock_all(self, keys: Iterable[str]) -> None:
        """:meth:`lock` each of ``keys``, in sorted order (two transactions locking
        overlapping sets never wait for each other in a cycle). A backend may take
        them all in one round trip."""
        for key in sorted(set(keys)):
            self.lock(key)

    def lock_with_next(self, keys: Iterable[str]) -> None:
        """:meth:`lock_all`, except that the locks may be sent with this session's next
        statement: they are held before anything the session reads or writes after
        this call, but perhaps not yet when it returns. For a caller whose next step
        under the locks is a database read (a look-up they guard), not work in memory
        that another transaction must not run at the same time: the lock and the read
        are then one round trip on PostgreSQL."""
        self.lock_all(keys)

    @abstractmethod
    def included(self, owners: list[StoredVersion], include: Include,
                 reverse: bool, limit: int | None = None) -> list[StoredVersion]:
        """Resources ``owners`` reference through ``include`` (reverse: that reference them);
        at most ``limit`` of them, when given (a revinclude can reach a whole database)."""

    @abstractmethod
    def reindex(self, keys: list[tuple[str, str]],
                index: Callable[[dict[str, Any]], IndexRows]) -> int:
        """Rebuild the index rows of the current versions of ``keys``; returns how many."""

    def export_rows(self, part: ExportSlice, after: int, limit: int
                    ) -> Generator[ExportRow, None, None]:
        """Up to ``limit`` rows of a bulk export after key ``after``, as they are read
        (see :mod:`hygeia.store.export_sql`).  Close the iterator before the session ends."""
        raise NotImplementedError

    def types_present(self, types: list[str]) -> list[str]:
        """Those of ``types`` that have ever had a resource stored (in the given order)."""
        raise NotImplementedError

    def find_ids(self, query: Query) -> list[str]:
        """Ids of current resources matching query (for conditional interactions)."""
        return [match.id for match in self.search(query).matches]


@dataclass(frozen=True)
class PoolUsage:
    """How a repository's connections are used at one moment: ``size`` open, ``in_use``
    lent to requests, ``waiting`` requests queued for one."""

    size: int
    in_use: int
    waiting: int


class Repository(ABC):
    """A FHIR resource store; ``dialect`` names the backend ("sqlite" or "postgresql")."""

    dialect: str
    # (stream, Migration) applied when this repository opened (store/migrations/runner.py)
    applied_migrations: list[tuple[str, Any]] = []  # replaced on open, never mutated

    @abstractmethod
    def transaction(self, *, flush_to_disk: bool = True) -> AbstractContextManager[Session]:
        """A writable session that commits on success and rolls back on any exception.

        ``flush_to_disk=False`` lets the commit return before the database has
        forced it to disk: it survives a crash of this process, and is made
        durable by the database's next flush (any ordinary commit, a checkpoint,
        PostgreSQL's WAL writer within a fraction of a second), but a power cut
        or a crash of the database server before that can lose it.  For records
        that are not clinical data (the audit trail of reads).
        """

    def write_turn(self) -> AbstractContextManager[None]:
        """Hold this process's right to write across several transactions opened in
        the block (by the same thread), or wait for it: a group committer takes it
        before gathering its units, so the units arriving while another writer held
        the database share its next transaction.  Only a backend with one writer at
        a time (SQLite: :mod:`hygeia.store.sqlite.writer_turn`) has a turn; elsewhere
        the block holds nothing."""
        return nullcontext()

    @abstractmethod
    def reader(self) -> AbstractContextManager[Session]:
        """A read-only session on one snapshot."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def pool_usage(self) -> PoolUsage:
        """The read/write connection pool's occupancy now, for monitoring (cheap: no
        query)."""
        raise NotImplementedError

    def schema_version(self, timeout: float) -> int | None:
        """The layout version the database records (None when it records none), read
        within about ``timeout`` seconds; raises when the database cannot be reached.

        For readiness probes (``/ready``): a probe must answer quickly even when the
        database is gone, so it never waits the full connection-pool timeout.
        """
        raise NotImplementedError

    def recorded_versions(self, timeout: float) -> dict[str, int]:
        """Every migration stream's version as the database records it ("core" is the
        layout version), read within about ``timeout`` seconds (``/ready``)."""
        raise NotImplementedError

    # whether listen() hears other processes' commits (PostgreSQL LISTEN/NOTIFY)
    commit_signals = False

    # how many write transactions of one process are worth running at once: 1 where
    # writers queue for one lock (SQLite), more where the database runs them side by
    # side (a group commit's committer threads, server/group_commit.py)
    concurrent_writers = 1

    def listen(self, stopping: threading.Event) -> Iterator[frozenset[str]]:
        """The words of each commit signal (:meth:`Session.signal`, and the types of the
        versions written) from other processes' transactions on this database, as they
        commit, until ``stopping`` is set; an empty set means "anything". Only where
        :attr:`commit_signals`."""
        raise NotImplementedError

    def feed_horizon(self) -> int:
        """The highest ``seq`` up to which every version is committed or rolled back, now:
        the change feed may be read up to it and never miss a version later (store/feed.py).

        A backend whose writers commit out of ``seq`` order (PostgreSQL) stops below the
        oldest version still being written.
        """
        raise NotImplementedError

    def changes(self, after: int, limit: int = 500, types: Collection[str] | None = None
                ) -> ChangeBatch:
        """Up to ``limit`` committed versions with ``seq`` after ``after`` (of ``types``,
        when given), oldest first, never past :meth:`feed_horizon`.

        Raises :class:`FeedLost` when ``after`` lies outside the retained history.
        """
        raise NotImplementedError

    def bulk_load(self) -> AbstractContextManager[bool]:
        """A bulk load's scope, in which a backend may trade per-commit costs for one
        cost at the end (True: the index tables' lookup indexes were dropped, to be
        built when it ends, because the database was empty).

        Only a loader that writes a lot should ask: searches during the scope are
        correct but may scan instead of using those indexes.
        """
        return nullcontext(False)

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rows_to_versions(resource_type: str | None, rows: Iterator[tuple]) -> list[StoredVersion]:
    """Turn (type, id, version, last_updated, deleted, content, method, seq) rows into versions."""
    return [
        StoredVersion(row[0] if resource_type is None else resource_type, row[1], row[2], row[3],
                      bool(row[4]), None if row[5] is None else bytes(row[5]), row[6], row[7])
        for row in rows
    ]
