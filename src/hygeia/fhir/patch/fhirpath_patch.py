"""Apply a FHIRPath Patch (R4 fhirpatch.html) to a resource.

The patch is a Parameters resource with one ``operation`` parameter per
change; each has parts ``type`` (add, insert, delete, replace, move),
``path`` and, depending on the type, ``name``, ``value``, ``index``,
``source`` and ``destination``.  Operations apply in order to a copy; the
caller validates the result like any update, so a patch can never store an
invalid resource.

The spec's base rules, as applied here: a path must select exactly one
element (none is an error except for ``delete``, which then does nothing;
several are an error for every type); paths stay inside the resource, and
the resource itself can be added to but never deleted or replaced (that is
DELETE or PUT).  A primitive's extensions (``_given``) follow its value when
it is deleted, inserted or moved.  Sizes and operation counts are bounded by
:class:`PatchLimits` (see :mod:`hygeia.fhir.patch.budget`).
"""

from __future__ import annotations

import copy
from typing import Any

from hygeia.fhir.outcome import BadRequest, FhirError, Issue, Unprocessable
from hygeia.fhir.patch.budget import PatchBudget, PatchLimits, json_size, member_size
from hygeia.fhir.patch.locate import Node, element, locate, split_parent


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any,
                         limits: PatchLimits | None = None) -> dict[str, Any]:
    """Return a patched copy of ``resource``; raise 400/422 naming the failing operation."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise BadRequest("A FHIRPath Patch must be a Parameters resource.", code="structure")
    operations = parameters.get("parameter") or []
    if not isinstance(operations, list):
        raise BadRequest("Parameters.parameter must be an array.", code="structure",
                         expression="Parameters.parameter")
    budget = PatchBudget(limits or PatchLimits(), json_size(resource))
    budget.check_operation_count(len(operations), "Parameters.parameter")
    result = copy.deepcopy(resource)
    for index, parameter in enumerate(operations):
        where = f"Parameters.parameter[{index}]"
        try:
            _apply(result, _operation(parameter), budget)
        except FhirError as error:
            raise type(error)(issues=[Issue(i.code, f"Operation {index}: {i.diagnostics}", where)
                                      for i in error.issues]) from None
        except RecursionError:
            raise BadRequest(f"Operation {index}: its value is nested too deeply.",
                             expression=where) from None
    return result


def _operation(parameter: Any) -> dict[str, Any]:
    if not isinstance(parameter, dict) or parameter.get("name") != "operation":
        raise BadRequest("Every parameter of a FHIRPath Patch must be named 'operation'.")
    parts: dict[str, Any] = {}
    for part in parameter.get("part") or []:
        if isinstance(part, dict) and isinstance(part.get("name"), str):
            parts[part["name"]] = part
    return parts


def _primitive(parts: dict[str, Any], name: str, kind: type) -> Any:
    part = parts.get(name)
    if part is None:
        return None
    values = [v for k, v in part.items() if k.startswith("value")]
    if len(values) != 1 or not isinstance(values[0], kind) or isinstance(values[0], bool):
        raise BadRequest(f"Part '{name}' needs one value of type {kind.__name__}.")
    return values[0]


def _apply(resource: dict[str, Any], parts: dict[str, Any], budget: PatchBudget) -> None:
    kind = _primitive(parts, "type", str)
    path = _primitive(parts, "path", str)
    if not path:
        raise BadRequest("Every operation needs a path.")
    handlers = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace,
                "move": _move}
    if kind not in handlers:
        raise BadRequest(f"Unknown operation type {kind!r}; use add, insert, delete, "
                         "replace or move.")
    handlers[kind](resource, path, parts, budget)


def _single(resource: dict[str, Any], path: str, budget: PatchBudget) -> Node:
    nodes = locate(resource, path, budget)
    if len(nodes) != 1:
        raise Unprocessable(f"Path '{path}' selects {len(nodes)} elements; exactly one is "
                            "needed.", code="processing", expression="path")
    return nodes[0]


def _not_the_resource(node: Node, path: str, kind: str, instead: str) -> None:
    if node.is_resource:
        raise Unprocessable(f"Path '{path}' is the resource itself, which a patch cannot "
                            f"{kind}; use {instead} on the resource.", expression="path")


def _add(resource: dict[str, Any], path: str, parts: dict[str, Any],
         budget: PatchBudget) -> None:
    target = _single(resource, path, budget)
    name = _primitive(parts, "name", str)
    container = target.value
    if not name or not isinstance(container, dict):
        raise Unprocessable(f"add needs a name and a path to an element that holds children "
                            f"('{path}').", code="processing")
    info = element(target.type, name)
    key, value = _value(parts, target.type, name)
    budget.spend(member_size(key, json_size(value)))
    if info is not None and info.repeats:
        container.setdefault(key, []).append(value)
    elif key in container or (info is not None and info.choices and
                              any(k in container for k in info.choices)):
        raise Unprocessable(f"{path}.{name} already has a value; use replace.",
                            code="processing")
    else:
        container[key] = value


def _insert(resource: dict[str, Any], path: str, parts: dict[str, Any],
            budget: PatchBudget) -> None:
    container, key, items, type_name = _list_at(resource, path, budget)
    index = _primitive(parts, "index", int)
    if index is None or not 0 <= index <= len(items):
        raise Unprocessable(f"insert needs an index between 0 and {len(items)}.",
                            code="processing")
    _, value = _value(parts, type_name, key)
    budget.spend(member_size(key, json_size(value)))
    items.insert(index, value)
    container[key] = items
    shadow = container.get(f"_{key}")
    if isinstance(shadow, list):
        shadow.insert(index, None)


def _delete(resource: dict[str, Any], path: str, parts: dict[str, Any],
            budget: PatchBudget) -> None:
    nodes = locate(resource, path, budget)
    if not nodes:
        return  # deleting what is not there is not an error (the spec: "if found")
    if len(nodes) > 1:
        raise Unprocessable(f"Path '{path}' selects {len(nodes)} elements; delete removes one.",
                            code="processing", expression="path")
    node = nodes[0]
    _not_the_resource(node, path, "delete", "DELETE")
    budget.spend(0, json_size(node.value))
    container, key = node.container, node.key
    if node.index is None:
        del container[key]
        container.pop(f"_{key}", None)
        return
    del container[key][node.index]
    shadow = container.get(f"_{key}")
    if isinstance(shadow, list) and node.index < len(shadow):
        del shadow[node.index]
        if not any(item is not None for item in shadow):
            del container[f"_{key}"]
    if not container[key]:
        del container[key]


def _replace(resource: dict[str, Any], path: str, parts: dict[str, Any],
             budget: PatchBudget) -> None:
    node = _single(resource, path, budget)
    _not_the_resource(node, path, "replace", "PUT")
    suffix, value = _typed_value(parts)
    budget.spend(json_size(value), json_size(node.value))
    if node.choice and suffix and node.index is None and node.key != node.choice + suffix:
        del node.container[node.key]  # another type of the same choice element
        node.container.pop(f"_{node.key}", None)
        node.container[node.choice + suffix] = value
    elif node.index is None:
        node.container[node.key] = value
    else:
        node.container[node.key][node.index] = value


def _typed_value(parts: dict[str, Any]) -> tuple[str | None, Any]:
    """The value of a replace, and its type suffix when it is a ``value[x]``."""
    part = parts.get("value")
    if isinstance(part, dict):
        typed = [(k, v) for k, v in part.items() if k.startswith("value")]
        if typed:
            return typed[0][0][len("value"):], typed[0][1]
    return None, _value(parts, None, None)[1]


def _move(resource: dict[str, Any], path: str, parts: dict[str, Any],
          budget: PatchBudget) -> None:
    container, key, items, _ = _list_at(resource, path, budget)
    source = _primitive(parts, "source", int)
    destination = _primitive(parts, "destination", int)
    if source is None or destination is None or not (
            0 <= source < len(items) and 0 <= destination < len(items)):
        raise Unprocessable(f"move needs source and destination indexes below {len(items)}.",
                            code="processing")
    items.insert(destination, items.pop(source))
    shadow = container.get(f"_{key}")
    if isinstance(shadow, list) and len(shadow) == len(items):
        shadow.insert(destination, shadow.pop(source))


def _list_at(resource: dict[str, Any], path: str, budget: PatchBudget
             ) -> tuple[dict[str, Any], str, list[Any], str | None]:
    parent_path, name = split_parent(path)
    parent = _single(resource, parent_path, budget)
    container = parent.value
    info = element(parent.type, name)
    if not isinstance(container, dict) or info is None or not info.repeats:
        raise Unprocessable(f"'{path}' is not a repeating element.", code="processing",
                            expression="path")
    items = container.get(name, [])
    return container, name, items, info.type


def _value(parts: dict[str, Any], owner_type: str | None, name: str | None) -> tuple[str, Any]:
    """The JSON key and value an operation carries (``value[x]`` or nested ``part``s)."""
    part = parts.get("value")
    if part is None:
        raise BadRequest("The operation needs a value.")
    typed = [(k, v) for k, v in part.items() if k.startswith("value")]
    if typed:
        suffix, value = typed[0][0][len("value"):], typed[0][1]
        info = element(owner_type, name) if name else None
        if info is not None and info.choices:
            return name + suffix, value
        return name or "", value
    if "part" in part:
        info = element(owner_type, name) if name else None
        return name or "", _anonymous(part["part"], info.type if info else None)
    raise BadRequest("The operation's value has neither value[x] nor parts.")


def _anonymous(parts: Any, type_name: str | None) -> dict[str, Any]:
    """Build a backbone element from parts, each naming one child."""
    built: dict[str, Any] = {}
    for part in parts if isinstance(parts, list) else []:
        child = part.get("name") if isinstance(part, dict) else None
        if not isinstance(child, str):
            raise BadRequest("Every part of a complex value needs a name.")
        key, value = _value({"value": part}, type_name, child)
        info = element(type_name, child)
        if info is not None and info.repeats:
            built.setdefault(key, []).append(value)
        else:
            built[key] = value
    return built
