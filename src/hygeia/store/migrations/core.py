"""The store's own migrations: the stream "core", whose version is SCHEMA_VERSION.

Version 8 is the baseline: the layout store/schema.py ``statements()`` create,
as every Hygeia before migrations left it (0c8a891 and c8189f5 both record 8;
what differs between them, the load journal table and the prefix indexes, the
baseline statements add when the database opens, so no migration is needed).

To change the core layout, append one entry, numbered one past the last::

    Migration(9, "change feed: committed writes in commit order", statements=(
        \"\"\"CREATE TABLE IF NOT EXISTS change_event (
            seq {serial},
            ...
        )\"\"\",
    )),

A new database gets the baseline and then every migration, so the entry is
the table's only definition.  A migration must not drop what the baseline
statements create (they run at every open and would bring it back): change
the baseline in store/schema.py in the same commit instead.
"""

from __future__ import annotations

from hygeia.store.migrations.model import Migration, Stream

BASELINE = 8

MIGRATIONS: tuple[Migration, ...] = (
)

CORE = Stream("core", MIGRATIONS, baseline=BASELINE)
