"""The registered write hooks, called by the store for each version a session puts.

:meth:`FhirService.transaction` hands the session one :class:`WriteHooks`
(``Session.on_put``); the store calls it on every ``put``, so each write path
(REST, Bundles, ``hygeia load``, ``$import``) runs the same hooks without
knowing of them. Lookup is by resource type, so a version of a type no hook
wants costs one dictionary lookup: the loader stores thousands a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hygeia.server.extensions import WriteHook
    from hygeia.store import Session, StoredVersion


class WriteHooks:
    """Write hooks by the resource types they want."""

    def __init__(self) -> None:
        self._every: list[WriteHook] = []
        self._by_type: dict[str, list[WriteHook]] = {}

    def register(self, hook: WriteHook) -> WriteHook:
        if hook.types is None:
            self._every.append(hook)
        else:
            for resource_type in hook.types:
                self._by_type.setdefault(resource_type, []).append(hook)
        return hook

    def __call__(self, session: Session, version: StoredVersion) -> None:
        for hook in self._by_type.get(version.resource_type, ()):
            hook.written(session, version)
        for hook in self._every:
            hook.written(session, version)
