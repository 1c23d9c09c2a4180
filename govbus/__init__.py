"""govbus: an event-driven exchange bus for government data sharing.

This package is the shared plumbing (settings, the local broker, Kafka client set-up and the
command line). The bus itself lives in the sibling folders, importable as ``govbus.topics``,
``govbus.schemas``, ``govbus.producers``, ``govbus.processors`` and ``govbus.consumers``.
"""

__version__ = "0.1.0"
