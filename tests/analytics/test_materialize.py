"""Files aside of a materialized view's Parquet file: what a killed writer leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hygeia.analytics.materialize import sweep_partials


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sweep_removes_only_files_of_dead_writers(tmp_path: Path) -> None:
    parquet = tmp_path / "view_names.parquet"
    dead = tmp_path / f"view_names.parquet.{dead_pid()}-1.partial"
    live = tmp_path / f"view_names.parquet.{os.getpid()}-1.partial"
    other_view = tmp_path / f"view_other.parquet.{dead_pid()}-1.partial"
    for path in (dead, live, other_view):
        path.write_bytes(b"PAR1")
    assert sweep_partials(parquet) == 1
    assert not dead.exists()
    assert live.exists() and other_view.exists()


def test_sweep_leaves_names_it_did_not_write(tmp_path: Path) -> None:
    parquet = tmp_path / "view_names.parquet"
    odd = tmp_path / "view_names.parquet.backup-1.partial"
    odd.write_bytes(b"")
    assert sweep_partials(parquet) == 0
    assert odd.exists()
