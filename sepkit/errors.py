"""The exceptions a user sees as a message instead of a traceback."""


class SepkitError(Exception):
    """A problem the user can fix: bad input, a missing file, an invalid setting.

    The message is one line that names the file, key or value at fault and says how to
    fix it. The command-line interface prints it as ``error: <message>`` and exits with
    status 2, without a traceback.
    """


class Interrupted(SepkitError):
    """SIGINT or SIGTERM arrived; a checkpoint of the position was saved."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number
