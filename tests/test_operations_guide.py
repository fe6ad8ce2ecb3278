"""The operations guide lists every ``hygeia serve`` flag and every server setting:
an undocumented limit is one an operator cannot find."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from hygeia.cli.main import build_parser, environment_variable
from hygeia.server import Settings
from hygeia.server.context import (
    AlertSettings,
    AuditSettings,
    AuthSettings,
    HttpSettings,
    JobSettings,
    OutboundSettings,
    SearchSettings,
    SubscriptionSettings,
)

SECTIONS = {"search": SearchSettings, "jobs": JobSettings, "auth": AuthSettings,
            "outbound": OutboundSettings, "audit": AuditSettings, "http": HttpSettings,
            "alerts": AlertSettings, "subscriptions": SubscriptionSettings}

GUIDE = Path(__file__).parent.parent / "docs" / "guide" / "operations.md"


def _serve_flags() -> list[str]:
    parser = build_parser()
    subparsers = next(action for action in parser._actions
                      if isinstance(action, argparse._SubParsersAction))
    serve = subparsers.choices["serve"]
    return [option for action in serve._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"]


def test_every_serve_flag_is_in_the_operations_guide() -> None:
    text = GUIDE.read_text()
    flags = _serve_flags()
    assert len(flags) > 30
    missing = [flag for flag in flags if f"`{flag}`" not in text]
    assert not missing, f"docs/guide/operations.md does not list {missing}"


def test_every_serve_flag_has_its_variable_in_the_environment_table() -> None:
    """One table lists them all: each row names the variable and the flag it stands for."""
    section = GUIDE.read_text().split("## Configuration from the environment", 1)[1]
    table = section.split("\n## ", 1)[0]
    rows = {line for line in table.splitlines() if line.startswith("| `HYGEIA_")}
    missing = [flag for flag in _serve_flags()
               if not any(row.startswith(f"| `{environment_variable(flag)}` | `{flag}` |")
                          for row in rows)]
    assert not missing, f"the environment table of docs/guide/operations.md lacks {missing}"
    assert len(rows) == len(_serve_flags()), "a row names a variable that is no flag"


def setting_names(settings: type = Settings, prefix: str = "") -> list[str]:
    """Every setting, a section's named ``section.field`` (``http.max_headers``)."""
    names = []
    for field in dataclasses.fields(settings):
        if field.name in SECTIONS and settings is Settings:
            names += setting_names(SECTIONS[field.name], f"{prefix}{field.name}.")
        else:
            names.append(prefix + field.name)
    return names


def test_every_setting_is_in_the_operations_guide() -> None:
    text = GUIDE.read_text()
    names = setting_names()
    assert "http.max_headers" in names and "max_body_bytes" in names
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"docs/guide/operations.md does not list {missing}"
