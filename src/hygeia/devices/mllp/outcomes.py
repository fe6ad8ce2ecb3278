"""The message log's outcome codes and extension base (:mod:`.messagelog`), apart so
``hygeia devices messages --outcome`` can offer them without importing the log's writes."""

from __future__ import annotations

EXTENSION = "urn:hygeia:hl7v2:"
OK, TRANSIENT, FATAL = "ok", "transient-error", "fatal-error"
