"""The gate: every event a department publishes is admitted here or dead-lettered with its reason.
``logic`` admits (key, partition, headers, schema) and writes the outputs, ``decide`` is the pure
one-number-one-source decision, ``golden`` the golden record, ``deadletters`` the dead letters,
``loop`` runs it all on the batched runtime.
"""
