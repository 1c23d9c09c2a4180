"""The one base class of errors a user can cause and fix.

The command line prints these as a plain message and exits 1, without a traceback: their
text already says what was wrong and what to do.
"""


class GovbusError(Exception):
    """A problem with the input, the configuration or the environment, explained."""
