"""The publishing SDK and the source adapters."""
