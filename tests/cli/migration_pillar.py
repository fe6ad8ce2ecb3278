"""``hygeia`` with a pillar that declares tables: ``python -m tests.cli.migration_pillar ...``.

A pillar's package registers its migration stream when it is imported; this
module is such a package in miniature, then runs the real command line.
"""

from __future__ import annotations

import sys

from hygeia.cli.main import main
from hygeia.store.migrations import Migration, MigrationStep, register_stream

STREAM = "trial"


def _welcome(step: MigrationStep) -> None:
    step.execute("INSERT INTO trial_note (text) VALUES (?)", ("migrated",))


register_stream(STREAM, [
    Migration(1, "trial items", statements=(
        "CREATE TABLE IF NOT EXISTS trial_item (id {ctext} PRIMARY KEY, amount {real})",)),
    Migration(2, "trial notes", statements=(
        "CREATE TABLE IF NOT EXISTS trial_note (text {text} NOT NULL)",), run=_welcome),
])

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
