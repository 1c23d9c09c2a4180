"""The hot-path processes' garbage-collector settings (govbus.collector)."""

import gc

from govbus import collector


def test_tune_freezes_what_start_up_made_and_raises_the_first_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)  # CPython's defaults, whatever ran before in this process
        collector.tune()
        assert gc.get_threshold() == collector.THRESHOLDS
        assert collector.THRESHOLDS[0] > 700
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
