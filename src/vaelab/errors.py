"""Errors a user can cause: the entry points print their message as one line, no traceback."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException


class VaelabError(Exception):
    """A problem with the user's input (config, data, checkpoint) that one sentence can explain."""


def check_number(key: str, value: object, minimum: float, integer: bool = False, strict: bool = False) -> None:
    """Raise a ``VaelabError`` naming ``key`` unless ``value`` is a number (an int if ``integer``) >= ``minimum``
    (> ``minimum`` if ``strict``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise VaelabError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}.")
    if value < minimum or (strict and value == minimum):
        raise VaelabError(f"{key} must be {'>' if strict else '>='} {minimum:g}, got {value!r}.")


def user_error(error: BaseException | None) -> VaelabError | None:
    """The ``VaelabError`` behind ``error`` (Hydra wraps errors raised while instantiating), if any."""
    while error is not None:
        if isinstance(error, VaelabError):
            return error
        if not isinstance(error, InstantiationException):
            return None
        error = error.__cause__
    return None


@contextmanager
def report_user_errors() -> Iterator[None]:
    """Turn a user error into one line on stderr and exit status 1; anything else propagates.

    With ``HYDRA_FULL_ERROR=1`` user errors propagate too, for their full traceback.
    """
    try:
        yield
    except Exception as error:
        cause = user_error(error)
        if cause is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(1) from None
