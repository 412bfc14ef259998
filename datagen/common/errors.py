"""The one exception type the CLI turns into a one-line message and exit code 2."""


class DatagenError(Exception):
    """A problem with the user's input: the message names the problem and the fix, in one line."""
