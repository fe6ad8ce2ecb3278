"""The store's own migrations: the stream "core", whose version is SCHEMA_VERSION.

Version 8 is the baseline: the layout store/schema.py ``statements()`` create,
as every Hygeia before migrations left it (0c8a891 and c8189f5 both record 8;
what differs between them, the load journal table and the prefix indexes, the
baseline statements add when the database opens, so no migration is needed).

To change the core layout, append one entry, numbered one past the last::

    Migration(10, "what the step does", statements=(
        \"\"\"CREATE TABLE IF NOT EXISTS ... (
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
    # the change feed (store/feed.py, docs/adr/0008-change-feed.md): the events are the
    # rows of resource_version themselves; these tables hold what reads them
    Migration(9, "change feed: consumers' cursors and the retained history's start",
              statements=(
        # one row per consumer: how far it has handled the feed, and which process holds
        # it (a lease, renewed while it runs; an expired lease frees the cursor)
        """CREATE TABLE IF NOT EXISTS feed_cursor (
            name {ctext} PRIMARY KEY,
            position {bigint} NOT NULL,
            owner {text},
            lease_until {bigint},
            updated {bigint} NOT NULL
        )""",
        # the seq after which versions are kept (none: all of them); a cursor below it
        # has lost events (FeedLost). Whatever purges history raises it in the same
        # transaction
        "CREATE TABLE IF NOT EXISTS feed_retention (retained_after {bigint} NOT NULL)",
    )),
)

CORE = Stream("core", MIGRATIONS, baseline=BASELINE)
