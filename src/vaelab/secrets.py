"""Passwords in URLs: vaelab refuses them, because a run copies its settings everywhere (Hydra's records, the config
tree, every logger's params, the console and the log); credentials go outside the URL instead (docs/scale-out.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vaelab.errors import VaelabError

# scheme://user:password@host...: the password is what lies between the first ':' after the user and the '@'.
URL_WITH_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<password>[^@/\s]+)(?P<at>@)")
OUTSIDE_THE_URL = ("PostgreSQL: PGPASSWORD or ~/.pgpass; MLflow: MLFLOW_TRACKING_USERNAME and "
                   "MLFLOW_TRACKING_PASSWORD")  # fmt: skip


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it as ``***`` (as SQLAlchemy's ``hide_password`` shows a URL)."""
    return URL_WITH_PASSWORD.sub(r"\g<head>***\g<at>", text)


def check_no_passwords(config: DictConfig) -> None:
    """One line, naming the key and the URL with its password hidden, when a setting (Hydra's included) holds a URL
    with a password, as written or once its interpolations (an environment variable) are resolved."""
    settings = OmegaConf.to_container(config, resolve=False)
    assert isinstance(settings, dict)
    hydra = settings.pop("hydra", {})
    for key, value in [*_strings(settings), *_strings(hydra, "hydra.")]:  # the run's own keys first
        resolved = _resolved(config, key) if "${" in value else value
        for text in {value, resolved} - {None}:
            if URL_WITH_PASSWORD.search(text):
                raise password_error(f"{key}={text}")


def check_command_line(argv: list[str]) -> None:
    """The same refusal for a password on the command line, before Hydra parses it (its own errors quote it)."""
    for token in argv[1:]:
        if URL_WITH_PASSWORD.search(token):
            raise password_error(token)


def password_error(setting: str) -> VaelabError:
    return VaelabError(
        f"{hide_passwords(setting)}: a password in a URL would be copied into the run's records, logs and logger "
        f"params; give the URL without it and the password outside it ({OUTSIDE_THE_URL})"
    )


def _strings(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{prefix}{index}.")
    elif isinstance(node, str):
        yield prefix.rstrip("."), node


def _resolved(config: DictConfig, key: str) -> str | None:
    try:
        value = OmegaConf.select(config, key)
    except Exception:  # noqa: BLE001 (an interpolation that needs Hydra's runtime, not set yet: nothing to check)
        return None
    return value if isinstance(value, str) else None
