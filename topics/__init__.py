"""The topic catalog as data (one YAML file per base library) and the code that applies it."""
