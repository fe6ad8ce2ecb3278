"""The mapping tables, read once from the JSON files shipped beside this module.

The tables are data, not code, so a site can review them and a test can check
each one against the message fixtures (``tables/*.json``, installed as package
data; each file's ``_about`` says what it maps).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def table(name: str) -> dict[str, Any]:
    """The table ``tables/{name}.json`` as a dict (read once per process)."""
    text = files(__package__).joinpath("tables", f"{name}.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
