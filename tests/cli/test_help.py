"""Every option of every ``hygeia`` command explains itself and its default."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from hygeia.cli.main import build_parser
from tests.cli.test_cli import hygeia

SELF_EXPLAINING = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def every_command(parser: argparse.ArgumentParser, name: str = "hygeia"
                  ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from every_command(sub, f"{name} {sub_name}")


def test_every_option_has_help_and_states_its_default() -> None:
    missing = []
    commands = dict(every_command(build_parser()))
    assert {"hygeia auth client list", "hygeia auth client disable", "hygeia auth user list",
            "hygeia serve", "hygeia load", "hygeia validate"} <= commands.keys()
    for name, parser in commands.items():
        for action in parser._actions:
            if isinstance(action, SELF_EXPLAINING):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            text = action.help or ""
            # an on/off switch defaults to off and a required option has none
            optional_value = (action.option_strings and not action.required
                              and not isinstance(action, argparse._StoreTrueAction))
            if not text or (optional_value and "default" not in text):
                missing.append(f"{name} {flag}")
    assert not missing, missing


def test_auth_without_a_subcommand_lists_them() -> None:
    for command, listed in ((("auth",), ("client", "user", "key", "launch")),
                            (("auth", "client"), ("create", "list", "disable", "delete")),
                            (("auth", "user"), ("create", "list", "disable"))):
        result = hygeia(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        for subcommand in listed:
            assert f"\n    {subcommand} " in result.stderr, result.stderr
        assert "auth_group" not in result.stderr and "auth_action" not in result.stderr


def test_no_command_lists_the_commands() -> None:
    result = hygeia()
    assert result.returncode == 2 and "auth_group" not in result.stderr
    for command in ("serve", "load", "auth", "validate"):
        assert f"\n    {command} " in result.stderr, result.stderr
