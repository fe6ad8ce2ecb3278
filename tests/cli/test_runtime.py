"""GC tuning for the long-running commands."""

from __future__ import annotations

import gc

from hygeia.cli.runtime import YOUNG_THRESHOLD, tune_garbage_collector


def test_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 1000  # the modules and tables imported so far
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
