"""Which migration streams this Hygeia knows: the core's, and each pillar's.

A pillar declares its tables with one call, made when its package is
imported (before the server or ``hygeia db migrate`` opens the database)::

    from hygeia.store.migrations import Migration, register_stream

    register_stream("insurance", [
        Migration(1, "claims and accumulators", statements=(
            "CREATE TABLE IF NOT EXISTS insurance_accumulator ("
            "member {ctext} NOT NULL, period {ctext} NOT NULL, "
            "amount {real} NOT NULL, PRIMARY KEY (member, period))",
        )),
    ])

Its version is then recorded (table ``hygeia_migration``, stream
"insurance"), checked, and brought forward exactly like the core's.
"""

from __future__ import annotations

from collections.abc import Iterable

from hygeia.store.migrations.core import CORE
from hygeia.store.migrations.model import Migration, Stream

_STREAMS: dict[str, Stream] = {CORE.name: CORE}


def register_stream(name: str, migrations: Iterable[Migration]) -> Stream:
    """Declare the tables of ``name`` (a pillar) as a sequence of migrations 1, 2, 3 ...

    Registering the same name again replaces it (a module reloaded in tests);
    "core" belongs to the store and cannot be replaced.
    """
    if name == CORE.name:
        raise ValueError("The stream 'core' belongs to the store: add core migrations to "
                         "hygeia/store/migrations/core.py.")
    if not name.isidentifier():
        raise ValueError(f"A stream name is a short identifier such as 'insurance', not {name!r}.")
    stream = Stream(name, tuple(migrations))
    _STREAMS[name] = stream
    return stream


def unregister_stream(name: str) -> None:
    """Forget a pillar's stream (tests); its recorded version stays in the database."""
    if name != CORE.name:
        _STREAMS.pop(name, None)


def streams() -> list[Stream]:
    """Every known stream, core first: the order migrations are applied in."""
    pillars = sorted((s for s in _STREAMS.values() if s.name != CORE.name),
                     key=lambda s: s.name)
    return [_STREAMS[CORE.name], *pillars]
