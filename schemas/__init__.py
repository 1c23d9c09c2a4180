"""Avro schemas of the base libraries, the change-event codec and compatibility checks."""
