"""The hot-path processes' garbage-collector settings (govbus.collector)."""

import gc

from govbus import collector


def test_tune_freezes_what_start_up_made_and_raises_the_first_threshold() -> None:
    before = gc.get_threshold()
    try:
        collector.tune()
        assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert collector.THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
