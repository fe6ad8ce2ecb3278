"""Every ``hygeia`` invocation imports each installed pillar's entry-point module to
build the argument parser, so those modules must not drag in the server, the JWT
library or the DICOM stack: a ``hygeia view run`` or ``hygeia --help`` would pay
for them on every start. Installing a pillar in a serving process imports the rest.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("hygeia.server.service", "hygeia.server.rest.write", "jwt", "pydicom",
         "pynetdicom", "numpy")

_PROBE = """
import json, sys
import hygeia.cli.main
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def imported_by(module: str) -> list[str]:
    """Modules that importing ``module`` adds, after the CLI's own imports (fresh process)."""
    done = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)],
                          capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("module", ["hygeia.clinical.pillar", "hygeia.devices.pillar",
                                    "hygeia.insurance.pillar",
                                    "hygeia.analytics.pillar", "hygeia.imaging.pillar"])
def test_a_pillar_entry_point_imports_nothing_heavy(module: str) -> None:
    added = imported_by(module)
    assert module in added  # the probe really imported it in a fresh process
    heavy = [name for name in added if name.split(".")[0] in HEAVY or name in HEAVY]
    assert heavy == [], f"{module} imports {heavy} at start-up"


def test_the_probe_sees_a_heavy_import() -> None:
    """The check above can fail: importing the server directly is reported."""
    assert "hygeia.server.service" in imported_by("hygeia.server.service")
