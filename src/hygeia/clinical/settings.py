"""The clinical pillar's tunable defaults, in a module that imports nothing heavy.

``hygeia`` builds its argument parser (every pillar's ``serve`` flags, with these
defaults in their help) on every invocation, so these numbers must be readable
without importing the engine, the CDS services or the server.
"""

from __future__ import annotations

SET_SECONDS = 300.0  # vitals whose times fall within 5 minutes form one observation set
WINDOW_SECONDS = 3600.0  # NEWS2 takes each parameter's latest reading within this window
DUPLICATE_ORDER_DAYS = 30.0  # the duplicate-order service looks back this many days
