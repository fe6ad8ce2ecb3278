"""Commands of one name from several parts become one (devices/commands.py)."""

from __future__ import annotations

import argparse

import pytest

from hygeia.devices.commands import merge_commands
from hygeia.devices.pillar import PILLAR


class Part:
    """A part's ``hygeia devices`` command with subcommands of its own."""

    help = "a part"

    def __init__(self, name: str, *subcommands: str) -> None:
        self.name, self.subcommands = name, subcommands
        self.ran: list[str] = []

    def configure(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest=f"{self.subcommands[0]}_action", required=True)
        for name in self.subcommands:
            actions.add_parser(name).add_argument("--db")

    def run(self, args: argparse.Namespace) -> int:
        self.ran.append(args.db)
        return len(self.ran)


def parse(command: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hygeia devices")
    command.configure(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


def test_each_subcommand_runs_the_part_that_brought_it() -> None:
    first, second, other = Part("devices", "messages"), Part("devices", "list", "assign"), \
        Part("view", "run")
    merged, kept = merge_commands([first, second, other])
    assert kept is other and merged.name == "devices"
    merged.run(parse(merged, ["assign", "--db", "x"]))
    merged.run(parse(merged, ["messages", "--db", "y"]))
    assert (first.ran, second.ran) == (["y"], ["x"])


def test_two_parts_bringing_one_subcommand_is_a_bug_said_at_once() -> None:
    merged, = merge_commands([Part("devices", "list"), Part("devices", "list")])
    with pytest.raises(RuntimeError, match="two parts bring 'hygeia devices list'"):
        parse(merged, ["list"])


def test_the_pillar_brings_one_devices_command() -> None:
    names = [command.name for command in PILLAR.commands()]
    assert names.count("devices") == 1
