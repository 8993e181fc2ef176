"""Objects built from what a user names: a config's ``_target_`` (``instantiate``) and an optional package
(``require``), each failure one ``VaelabError`` line."""

import importlib
from typing import Any

import hydra.utils

from vaelab.errors import VaelabError, user_error


def require(module: str, extra: str, purpose: str) -> Any:
    """The optional ``module``, imported; a ``VaelabError`` naming the extra that installs it when it is missing (a
    plain ``pip install vaelab`` has none of them)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise VaelabError(f"{purpose} needs {module}, which is not installed: pip install 'vaelab[{extra}]'") from None


def instantiate(config: Any, key: str | None = None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, with a ``VaelabError`` a class raises (a value it checks) raised as itself,
    not wrapped in Hydra's ``InstantiationException``: ``train(cfg)`` and ``evaluate(cfg)`` raise typed errors.
    With ``key`` (the setting that holds ``config``), any other failure is one ``VaelabError`` naming it."""
    try:
        return hydra.utils.instantiate(config, **kwargs)
    except Exception as error:
        cause = user_error(error)
        if cause is not None:
            raise cause from None
        if key is None:
            raise
        reason = (str(error.__cause__ or error).splitlines() or [type(error).__name__])[0]
        raise VaelabError(f"{key}: cannot build {config.get('_target_')!r} ({reason})") from None
