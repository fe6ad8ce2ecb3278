"""``hygeia serve`` with two event consumers, for the change feed's crash test.

    python -m tests.api.feed_server serve --port N --db URL

``HYGEIA_TEST_FEED_DIR`` names a folder where the serving process writes its pid
(``pid``) and the at-least-once consumer appends each seq it handled (``log``);
the consumers begin once the test has created ``go`` there.
Both consumers handle Patient events slowly, a few per batch, so a kill lands in
the middle of the stream.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from hygeia.cli.main import main
from hygeia.server.events import EventContext, register_consumer
from hygeia.server.rest.write import create
from hygeia.store import ChangeBatch

FOLDER = Path(os.environ.get("HYGEIA_TEST_FEED_DIR", "."))
PAUSE = 0.02  # seconds per event: 100 events take a consumer about 2 s


def _note_pid() -> None:
    """Record this process and hold the consumers until the test says go (a file
    ``go``): the test's writes must all be in before a consumer races through them."""
    while not (FOLDER / "go").exists():
        time.sleep(0.01)
    pid = FOLDER / "pid"
    if not pid.exists() or pid.read_text() != str(os.getpid()):
        pid.write_text(str(os.getpid()))


class CrashTally:
    """Transactional: a Basic per Patient event, committed with the cursor."""

    name = "crash-tally"
    types = frozenset({"Patient"})
    from_start = True
    batch = 4

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        _note_pid()
        with context.transaction() as session:
            for event in batch.events:
                time.sleep(PAUSE)
                create(session, "Basic", {"resourceType": "Basic", "code": {"text": "seen"},
                                          "identifier": [{"system": "urn:seen",
                                                          "value": str(event.seq)}]})


class CrashLog:
    """At least once: appends each seq to a file (synced), the runner advances after."""

    name = "crash-log"
    types = frozenset({"Patient"})
    from_start = True
    batch = 3

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        _note_pid()
        with (FOLDER / "log").open("a") as log:
            for event in batch.events:
                time.sleep(PAUSE)
                log.write(f"{event.seq}\n")
                log.flush()
                os.fsync(log.fileno())


if __name__ == "__main__":
    register_consumer(CrashTally)
    register_consumer(CrashLog)
    sys.exit(main(sys.argv[1:]))
