"""Versioned, forward-only schema migrations, in named streams (core and pillars).

- ``model``: :class:`Migration` and :class:`Stream`.
- ``core``: the store's own stream; its latest version is ``SCHEMA_VERSION``.
- ``registry``: :func:`register_stream`, the one call a pillar makes.
- ``runner``: reads recorded versions, refuses, applies (imported by the
  backends; it needs store/schema.py, which imports this package, so it is
  not imported here).
"""

from hygeia.store.migrations.core import CORE
from hygeia.store.migrations.model import Migration, MigrationStep, Stream
from hygeia.store.migrations.registry import register_stream, streams, unregister_stream

__all__ = ["CORE", "Migration", "MigrationStep", "Stream", "register_stream", "streams",
           "unregister_stream"]
