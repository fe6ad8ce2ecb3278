"""One ``hygeia devices`` command made of the subcommands the parts bring.

Each part of the pillar (MLLP, MQTT, the registry) may bring ``hygeia devices
...`` subcommands (``messages``, ``reprocess``, ``list``, ``assign`` ...) as a
:class:`~hygeia.server.extensions.CliCommand` of its own named ``devices``; the
CLI takes one command per name, so commands of one name are merged here: the
first configures the parser, the others' subcommands join its subcommands, and
each invocation runs the command whose subcommand was chosen.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence

from hygeia.server.extensions import CliCommand


def merge_commands(commands: Iterable[CliCommand]) -> Sequence[CliCommand]:
    """The commands with those of one name merged into one (in order of first use)."""
    by_name: dict[str, list[CliCommand]] = {}
    for command in commands:
        by_name.setdefault(command.name, []).append(command)
    return [group[0] if len(group) == 1 else MergedCommand(group)
            for group in by_name.values()]


class MergedCommand:
    """Several commands of one name, each bringing subcommands, as one command."""

    def __init__(self, commands: list[CliCommand]) -> None:
        self.commands = commands
        self.name = commands[0].name
        self.help = "; ".join(command.help for command in commands)
        self._owners: dict[str, CliCommand] = {}
        self._dest = ""

    def configure(self, parser: argparse.ArgumentParser) -> None:
        first = self.commands[0]
        first.configure(parser)
        action = _subcommands(parser, first)
        self._dest = action.dest
        self._owners.update(dict.fromkeys(action.choices, first))
        epilogs = [parser.epilog]
        for command in self.commands[1:]:
            scratch = argparse.ArgumentParser(prog=parser.prog)
            command.configure(scratch)
            theirs = _subcommands(scratch, command)
            for name, subparser in theirs.choices.items():
                if name in action.choices:
                    raise RuntimeError(f"two parts bring 'hygeia {self.name} {name}'")
                action.choices[name] = subparser
                self._owners[name] = command
            action._choices_actions.extend(theirs._choices_actions)  # listed in --help
            epilogs.append(scratch.epilog)
        parser.epilog = "\n\n".join(epilog for epilog in epilogs if epilog)

    def run(self, args: argparse.Namespace) -> int:
        return self._owners[getattr(args, self._dest)].run(args)


def _subcommands(parser: argparse.ArgumentParser, command: CliCommand
                 ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"'hygeia {command.name}' is brought by several parts, so each must "
                       f"add subcommands; {type(command).__name__} adds none")
