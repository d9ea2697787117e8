"""The one exception type a user sees as a message instead of a traceback."""


class SepkitError(Exception):
    """A problem the user can fix: bad input, a missing file, an invalid setting.

    The message is one line that names the file, key or value at fault and says how to
    fix it. The command-line interface prints it as ``error: <message>`` and exits with
    status 2, without a traceback.
    """
