"""The errors a user can cause, and how to find one behind a library's wrapping (``user_error``). The commands
print their message as one line, no traceback (``vaelab.exits``)."""

import errno

from hydra.errors import InstantiationException


class VaelabError(Exception):
    """A problem with the user's input (config, data, checkpoint) that one sentence can explain."""


class Interrupted(VaelabError):
    """The run was stopped from outside (Ctrl-C, SIGTERM) after saving what it can go on from; ``recorded``: its
    folder's ``metrics.json`` already says so."""

    def __init__(self, message: str, recorded: bool = False) -> None:
        super().__init__(message)
        self.recorded = recorded


def user_error(error: BaseException | None) -> VaelabError | None:
    """The ``VaelabError`` behind ``error`` (Hydra wraps errors raised while instantiating), if any; a path too
    long for the system is one too."""
    while error is not None:
        if isinstance(error, VaelabError):
            return error
        if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:  # a setting's path, whichever
            name = str(error.filename or "")
            return VaelabError(f"a path is longer than this system allows ({len(name)} characters: {name[:60]}...); "
                               "pass a shorter one.")  # fmt: skip
        if not isinstance(error, InstantiationException):
            return None
        error = error.__cause__
    return None
