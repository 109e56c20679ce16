"""The one exception type that the command line turns into a single red line and a non-zero exit."""


class RDDError(Exception):
    """A user-facing error: bad input, a missing file, a broken tolerance."""
