"""How much of the MLLP listener one peer may hold (:mod:`.listener` explains each).

Apart from the listener so ``hygeia serve``'s parser can show the defaults without
importing the message handling and the server behind it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MllpLimits:
    """What one peer may hold of the listener (:mod:`.listener`'s docstring)."""

    max_connections: int = 100
    idle_timeout: float = 300.0
    max_message_bytes: int = 1024 * 1024
