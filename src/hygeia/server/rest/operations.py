"""The registry of FHIR operations this server offers, core and pillar alike.

The router asks it where an operation is offered and with which methods;
the CapabilityStatement and the OpenAPI document list what it holds. The
core's own operations (``$everything``, ``$validate``, ``$export``,
``$import``, ``$reindex``) are registered through it exactly as a pillar's
are (:mod:`hygeia.server.rest.core_operations`).
"""

from __future__ import annotations

from collections.abc import Iterator

from hygeia.fhir.outcome import MethodNotAllowed
from hygeia.server.extensions import Operation
from hygeia.server.rest.router import unsupported_operation


class DuplicateOperation(ValueError):
    """Two registrations claim the same operation name or interaction name."""


class OperationRegistry:
    """Operations by name (``everything``, not ``$everything``)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Operation] = {}

    def register(self, operation: Operation) -> Operation:
        if operation.name in self._by_name:
            raise DuplicateOperation(f"The operation ${operation.name} is registered twice.")
        taken = {registered.interaction for registered in self._by_name.values()}
        if operation.interaction in taken:
            raise DuplicateOperation(f"The interaction name {operation.interaction!r} is "
                                     "used by another operation.")
        self._by_name[operation.name] = operation
        return operation

    def __iter__(self) -> Iterator[Operation]:
        return iter(sorted(self._by_name.values(), key=lambda operation: operation.name))

    def get(self, name: str) -> Operation | None:
        return self._by_name.get(name)

    def resolve(self, method: str, name: str, resource_type: str | None,
                instance: bool) -> Operation:
        """The operation ``$name`` called with ``method`` on a target, or 404/405."""
        operation = self._by_name.get(name.removeprefix("$"))
        target = "[base] (the system level)" if resource_type is None else \
            f"{resource_type}/[id]" if instance else resource_type
        if operation is None or not operation.offered_at(resource_type, instance):
            offered = operation.where_offered() if operation is not None else None
            raise unsupported_operation(name, target, resource_type, offered)
        allowed = set(operation.methods) | ({"HEAD"} if "GET" in operation.methods else set())
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed on ${operation.name}; use "
                                   f"{' or '.join(operation.methods)}.")
        return operation

    def at_system(self) -> list[Operation]:
        return [operation for operation in self if operation.system]

    def on_type(self, resource_type: str) -> list[Operation]:
        """Operations offered on ``resource_type`` or its instances (CapabilityStatement)."""
        return [operation for operation in self
                if operation.offered_at(resource_type, False) or
                operation.offered_at(resource_type, True)]
