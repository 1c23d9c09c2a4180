"""One module per benchmark scenario; each has `run(context) -> dict` (see `context.py`)."""
