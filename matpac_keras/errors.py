"""Errors a user can fix: bad input files, arguments or output locations.

Every CLI prints an `InputError` as one line, `Error: <file or argument>: <reason>`, and exits
with status 1 (the traceback only with `--verbosity=1`); anything else is a bug and keeps its
traceback. Raise it (or a subclass) with a message that starts with the file or argument at
fault. It is a `ValueError`, so callers that caught ValueError before still do.
"""


class InputError(ValueError):
    """Bad input the user can fix; the message names the file or argument first."""
