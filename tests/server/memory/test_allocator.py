"""The glibc allocator settings of a bulk load reach the workers and the loader."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from hygeia.server.loading.pool import WorkerPool
from hygeia.server.memory.allocator import ARENAS, MMAP_THRESHOLD


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_load_workers_run_with_the_settings() -> None:
    pool = WorkerPool(1)
    try:
        (pid,) = pool.pids
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    finally:
        pool.close()
    assert f"MALLOC_ARENA_MAX={ARENAS}".encode() in environment
    assert f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}".encode() in environment


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_loading_process_applies_them_with_mallopt() -> None:
    """In a child process, so the test run's own allocator is left alone."""
    result = subprocess.run(
        [sys.executable, "-c", "from hygeia.server.memory.allocator import tune_this_process as t; "
                               "print(t())"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_by_a_large_request_goes_back_to_the_system() -> None:
    """What a large Bundle freed leaves the process within a moment (RSS falls back)."""
    script = (
        "import time\n"
        "from hygeia.server.memory.allocator import release_memory_soon\n"
        "def rss():\n"
        "    line = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0]\n"
        "    return int(line.split()[1]) // 1024\n"
        "before = rss()\n"
        "data = [{'family': str(i), 'given': [str(i)]} for i in range(500_000)]\n"
        "keep = [{}] * 10\n"  # something allocated after, so the heap top is not all free
        "grown = rss()\n"
        "del data\n"
        "release_memory_soon()\n"
        "time.sleep(1.0)\n"
        "print(before, grown, rss())\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    before, grown, after = map(int, result.stdout.split())
    assert grown - before > 100  # MB: the test built something worth giving back
    assert after - before < 50, result.stdout
