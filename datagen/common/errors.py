"""The exception types the CLI turns into a one-line message: DatagenError (bad input, exit 2) and WriteFailed (a
file that could not be written, exit 1)."""


class DatagenError(Exception):
    """A problem with the user's input: the message names the problem and the fix, in one line."""


class WriteFailed(OSError):
    """A file could not be written (disk full, file size limit, I/O error): the message names the file and the fix.

    A fault, not bad input, hence its own type and exit code 1. An OSError, so code that shrugs off a failed
    optional write (a cache file) still does.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno
