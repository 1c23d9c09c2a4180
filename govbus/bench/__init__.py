"""`govbus bench`: how fast and how fresh the bus is, side by side with its limits.

Every figure the bench reports is compared, in the same run on the same machine, with a
reference: the raw Kafka ceiling (Kafka's own producer tool and our Python client stack with
no bus logic) and the centralized polling model the bus replaces. Absolute numbers depend on
the machine and on whatever else runs on it; the ratios are what carry over.

Scenarios live in `scenarios/`, one module each; `commands.py` is the CLI, `report.py`
writes the JSON and Markdown results.
"""
