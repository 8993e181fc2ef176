"""How a command ends on an error a user can fix: one ``error:`` line on stderr and exit status 1. Only the command
layer ends the process: ``vaelab.cli`` and the hooks Hydra calls (``ends_on_user_error``)."""

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from vaelab.errors import VaelabError, user_error

Hook = TypeVar("Hook", bound=Callable[..., Any])


def exit_with_error(message: object) -> NoReturn:
    """How a command ends on an error a user can fix: ``error: <message>`` on stderr, exit status 1."""
    from vaelab.secrets import hide_passwords  # a connection's error can quote its URL

    print(f"error: {hide_passwords(str(message))}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def ends_on_user_error(hook: Hook) -> Hook:
    """A hook Hydra calls (a callback's, a sweeper's, a launcher's), ended as a command ends (``exit_with_error``)
    when it raises a user error: Hydra would show a traceback of its own frames."""

    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except (VaelabError, OSError) as error:  # OSError: a path too long for the system, a folder not writable
            exit_with_error(user_error(error) or error)

    return guarded  # type: ignore[return-value]
