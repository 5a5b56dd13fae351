"""The lab's error: what every lab module raises when an operation fails (`sparkd.lab.lab` re-exports it)."""


class LabError(Exception):
    """A lab operation failed; the message says what to do."""
