"""Finding the installed pillars, and giving them their flags, commands and start-up.

A pillar announces itself in its package metadata, in the ``hygeia.pillars``
entry-point group (``[project.entry-points."hygeia.pillars"]`` in its
``pyproject.toml``), naming an object that follows
:class:`hygeia.server.extensions.Pillar`. The CLI is the composition root: it
is the one place that imports pillars, so the core never does.

Every installed pillar runs unless ``HYGEIA_PILLARS`` names the ones to run
(comma-separated, or ``none`` for the bare FHIR server): an operator who
installed the clinical pillar but does not want its engine writing scores yet,
or a test of the core that counts exactly what it stored.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from hygeia.cli.errors import UserError

if TYPE_CHECKING:
    from hygeia.server.extensions import ListenAddress, Pillar, PillarHost

GROUP = "hygeia.pillars"
CHOICE = "HYGEIA_PILLARS"  # which installed pillars run: names, comma-separated, or "none"


@cache
def installed_pillars() -> tuple[Pillar, ...]:
    """The pillars installed in this environment, by name."""
    found: dict[str, Pillar] = {}
    for entry in entry_points(group=GROUP):
        try:
            pillar = entry.load()
        except Exception as error:  # a broken pillar must not look like a Hygeia bug
            raise UserError(f"the pillar {entry.name!r} ({entry.value}) cannot be loaded: "
                            f"{error}; reinstall it or uninstall it") from error
        if pillar.name in found:
            raise UserError(f"two installed pillars are both named {pillar.name!r}")
        found[pillar.name] = pillar
    chosen = _chosen(found)
    return tuple(found[name] for name in sorted(found) if chosen is None or name in chosen)


def _chosen(installed: Mapping[str, Pillar]) -> set[str] | None:
    """The pillars ``HYGEIA_PILLARS`` names (None when it is unset: every installed one)."""
    value = os.environ.get(CHOICE)
    if value is None:
        return None
    names = {name.strip() for name in value.split(",") if name.strip()} - {"none"}
    unknown = sorted(names - set(installed))
    if unknown:
        raise UserError(f"{CHOICE} names {', '.join(unknown)}, which is not an installed "
                        f"pillar (installed: {', '.join(sorted(installed)) or 'none'})")
    return names


def add_serve_options(serve: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each pillar's ``hygeia serve`` flags, in a help group of its own; the destinations
    of each pillar's flags, by pillar name."""
    destinations: dict[str, list[str]] = {}
    for pillar in installed_pillars():
        group = serve.add_argument_group(f"{pillar.name} pillar")
        pillar.serve_options(group)
        destinations[pillar.name] = [action.dest for action in group._group_actions]
    return destinations


def add_commands(commands: Any) -> None:
    """Each pillar's ``hygeia`` subcommands (``commands``: the CLI's subparsers)."""
    for pillar in installed_pillars():
        for command in pillar.commands():
            parser = commands.add_parser(command.name, help=command.help)
            command.configure(parser)
            parser.set_defaults(pillar_command=command)


def pillar_options(args: argparse.Namespace,
                   destinations: Mapping[str, list[str]]) -> dict[str, dict[str, Any]]:
    """The values of each pillar's serve flags: plain data, handed to the serving
    processes."""
    return {name: {dest: getattr(args, dest) for dest in dests}
            for name, dests in destinations.items()}


def listen_addresses(options: Mapping[str, Mapping[str, Any]],
                     host: str) -> list[ListenAddress]:
    """The addresses the pillars' shared listeners serve on, from their serve flags, for
    ``hygeia serve`` to bind before forking (``host``: its ``--host``). A pillar declares
    them in its optional ``listen_addresses`` method; one without has none."""
    found: list[ListenAddress] = []
    for pillar in installed_pillars():
        declare = getattr(pillar, "listen_addresses", None)
        if declare is not None:
            found.extend(declare(options.get(pillar.name, {}), host))
    return found


def install_pillars(host: PillarHost, options: Mapping[str, Mapping[str, Any]]) -> None:
    """Let each installed pillar register what it adds, before requests are taken."""
    for pillar in installed_pillars():
        pillar.install(host, options.get(pillar.name, {}))


def pillar_demos(host: PillarHost, fhir_base: str) -> list[str]:
    """Each pillar's demo data, stored; the lines they print for ``serve --demo``."""
    lines: list[str] = []
    for pillar in installed_pillars():
        lines.extend(pillar.demo(host, fhir_base))
    return lines
