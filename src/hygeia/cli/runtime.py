"""Process-level tuning for the long-running commands (``serve``, ``load``).

CPython's cyclic garbage collector runs a young-generation pass every 700
container allocations and, as survivors pile up, full passes over every live
object.  A FHIR transaction Bundle parses into hundreds of thousands of dicts
and lists that all stay alive until the request ends (and are then freed by
reference counting, not by the collector), so those passes traverse the same
in-flight data again and again for nothing: profiling Synthea ingest showed
the collector inside JSON parsing, validation and extraction alike.

Two measures, both standard for servers: the objects built at start-up
(spec tables, compiled rules) are moved out of the collector's reach with
:func:`gc.freeze`, and young passes run every 20,000 allocations instead of
700.  Cyclic garbage is still collected, only in fewer, larger passes.
Measured on in-process Synthea ingest (CPU time, 2 cores, same run): about
10-15% more resources/s.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

YOUNG_THRESHOLD = 20_000
# ``hygeia load`` holds a batch of 4,000 prepared resources (about 20 tuples each) and
# the answers in flight, all freed by reference counting once committed: with 20,000,
# collections passed over them about 180 times per 100,000 resources (0.9 s of the
# loader's CPU), with 200,000 about 17 times (0.08 s)
LOAD_YOUNG_THRESHOLD = 200_000
# seconds a thread waiting for the interpreter lock lets the holder run on (default
# 0.005).  In ``hygeia load`` the committing thread releases the lock for every row
# SQLite inserts and the loading thread for every pipe or file read; each taking it
# back could wait 5 ms for the other's Python work, and the committing thread is
# the load's critical path
LOAD_SWITCH_INTERVAL = 0.0005
# ``hygeia serve``'s default (``--gil-switch-interval``, milliseconds): CPython's own
# 5 ms until measured otherwise (docs/adr/0050-serve-gil-switch-interval.md)
SERVE_SWITCH_INTERVAL_MS = 5.0


def tune_garbage_collector(young: int = YOUNG_THRESHOLD) -> None:
    """Freeze what start-up built and make young collections rarer."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def set_switch_interval(milliseconds: float) -> None:
    """How long a thread waiting for the interpreter lock lets its holder run on.

    A thread that released the lock for I/O (a SQLite commit, a socket read) waits up
    to this long for a CPU-bound thread to hand it back, however short its own Python
    work; a thread holding a lock of ours meanwhile (SQLite's writer's turn) makes
    every other writer wait too (a convoy).  Shorter means more hand-overs, each a
    few microseconds.
    """
    sys.setswitchinterval(milliseconds / 1000)


def default_threads() -> int:
    """Request threads for ``serve``: two per core plus one.

    Python runs one thread at a time, but a request spends much of its time in
    the database driver with the GIL released, so a few threads per core keep
    both the interpreter and the database busy; more only queue on the GIL
    (and the HTTP server warns above this number).
    """
    return 2 * (os.cpu_count() or 1) + 1


def beside_database(db_url: str, suffix: str) -> str:
    """Where a server keeps something of its own: ``NAME{suffix}`` beside a SQLite
    ``NAME.db``; for PostgreSQL, ``hygeia{suffix}`` in the working directory."""
    if db_url.startswith("sqlite:///"):
        path = Path(db_url[len("sqlite:///"):].split("?", 1)[0])
        return str(path.with_name(f"{path.stem}{suffix}"))
    return str(Path(f"hygeia{suffix}").resolve())
