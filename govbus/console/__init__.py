"""The governance console (`govbus console`): a live web page of who receives what, how fresh
it is, and what needs attention, read from the bus's own topics as the `governance` principal.

- ``live``: one reader thread follows the topics and keeps what the views need in memory;
- ``views``: the four views (lineage, freshness, needs attention, traceability) as JSON, built
  with the bus's own folds and rules (subscriptions, objections, conflicts, audit);
- ``web``: the Starlette application (pages, JSON, login), served by uvicorn;
- ``commands``: the command line; ``process``: the console as a child process (demo, tests).
"""
