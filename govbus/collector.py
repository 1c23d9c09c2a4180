"""The garbage collector's settings for a process on the hot path (``tune``).

Why: routing one change to 400 subscriptions makes some 1,600 container objects (a message,
its headers, a sharing-record entry per delivery) that live until the batch is sent. With
CPython's defaults, generation 0 is collected every 700 new objects and each collection walks
every object not yet promoted — the catalog, the parsed schemas, the subscription book among
them. Frozen after start-up, those are never walked again; a larger first threshold collects
a batch's short-lived objects a tenth as often. Measured with ``govbus bench --scenario
fan_out`` (router µs per change, 400 subscriptions in ten projections): about 1,110 with the
defaults, 960 with the start-up frozen, 850 with both. Nothing here changes what is freed:
reference counting frees almost every object at once; the collector only finds cycles.
"""

from __future__ import annotations

import gc

# Generation 0 every 50,000 new container objects (700 by default), the older generations
# less often too. Why so high: the gate keeps its recently decided golden records (some
# 200,000 objects) that every older-generation collection walked again; in process, its
# time per event with these thresholds equals that with the collector off (119 µs; 125 with
# 10,000, 10, 10), and the router's fan-out is no slower.
THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Freeze what the process made so far (call it once start-up is done) and raise the
    first threshold. Idempotent: a second call freezes what was made since."""
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
