"""Every ``hygeia`` command loads the imaging pillar to build its flags; that must not
import pydicom (which pulls in numpy) or pynetdicom, ~0.3 s on every CLI process.

Each case runs the CLI in a fresh interpreter and lists, at exit, the DICOM
libraries in ``sys.modules``; the commands that need them (serving, deleting a
study) import them when they run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydicom", "pynetdicom")
_PROBE = """
import atexit, sys
wanted = set(sys.argv[1].split(','))
def report():
    heavy = sorted({m.split('.')[0] for m in sys.modules} & wanted)
    sys.__stderr__.write('HEAVY=' + ','.join(heavy) + '\\n')
atexit.register(report)
sys.argv = ['hygeia', *sys.argv[2:]]
from hygeia.cli.main import main
main()
"""


def heavy_modules(*args: str) -> list[str]:
    """The DICOM libraries imported by ``hygeia ARGS`` (the CLI's exit code is ignored)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, ",".join(HEAVY), *args],
                          capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.startswith("HEAVY=")]
    assert lines, f"the probe did not report: {done.stderr[-2000:]}"
    return [name for name in lines[-1].removeprefix("HEAVY=").split(",") if name]


@pytest.mark.parametrize("args", [("--help",), ("serve", "--help"), ("imaging", "--help"),
                                  ("imaging", "ae", "list", "--help")])
def test_help_imports_no_dicom_library(args: tuple[str, ...]) -> None:
    assert heavy_modules(*args) == []


def test_the_probe_sees_a_dicom_import(tmp_path: Path) -> None:
    """The probe itself works: a command that needs pydicom is seen importing it."""
    assert "pydicom" in heavy_modules("imaging", "delete", "1.2.3", "--db",
                                      f"sqlite:///{tmp_path}/hygeia.db")
