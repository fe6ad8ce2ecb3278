"""TODO(issue 16): the ADT handlers."""

from __future__ import annotations

from hygeia.devices.hl7v2.handling import Handler

HANDLES: dict[str, Handler] = {}
