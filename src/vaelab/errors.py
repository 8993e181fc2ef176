"""Errors a user can cause: the entry points print their message as one line, no traceback."""

import difflib
import errno
import importlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import hydra.utils
from hydra.errors import InstantiationException


class VaelabError(Exception):
    """A problem with the user's input (config, data, checkpoint) that one sentence can explain."""


class Interrupted(VaelabError):
    """The run was stopped from outside (Ctrl-C, SIGTERM) after saving what it can go on from; ``recorded``: its
    folder's ``metrics.json`` already says so."""

    def __init__(self, message: str, recorded: bool = False) -> None:
        super().__init__(message)
        self.recorded = recorded


def exit_with_error(message: object) -> NoReturn:
    """How a command ends on an error a user can fix: ``error: <message>`` on stderr, exit status 1."""
    from vaelab.secrets import hide_passwords  # a connection's error can quote its URL

    print(f"error: {hide_passwords(str(message))}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def require(module: str, extra: str, purpose: str) -> Any:
    """The optional ``module``, imported; a ``VaelabError`` naming the extra that installs it when it is missing (a
    plain ``pip install vaelab`` has none of them)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise VaelabError(f"{purpose} needs {module}, which is not installed: pip install 'vaelab[{extra}]'") from None


def make_folder(folder: Path, setting: str, advice: str = "") -> None:
    """``folder`` with its parents, made if missing; one ``VaelabError`` line naming the ``setting`` that put it there
    (and ``advice``) instead of an ``OSError`` traceback when it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VaelabError(f"{setting}: cannot create {folder} ({error.strerror}){advice}") from None


def check_number(
    key: str, value: object, minimum: float, integer: bool = False, strict: bool = False, maximum: float | None = None
) -> None:
    """Raise a ``VaelabError`` naming ``key`` unless ``value`` is a number (an int if ``integer``) >= ``minimum``
    (> ``minimum`` if ``strict``) and <= ``maximum``."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise VaelabError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}.")
    if not math.isfinite(value):
        raise VaelabError(f"{key} must be a finite number, got {value!r}.")
    if value < minimum or (strict and value == minimum):
        raise VaelabError(f"{key} must be {'>' if strict else '>='} {minimum:g}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise VaelabError(f"{key} must be <= {maximum}, got {value!r}.")


SEED_RANGE = (0, 2**32 - 1)  # what numpy's and Lightning's seeding take


def check_seed(seed: object) -> None:
    """``seed`` (null: unseeded) must be an integer numpy can seed with: 1.5 is not silently 1."""
    if seed is not None:
        check_number("seed", seed, minimum=SEED_RANGE[0], integer=True, maximum=SEED_RANGE[1])


def check_added_keys(config: Any) -> None:
    """A top-level key that the command line adds (``+seeed=3``) and that is no config group is a misspelling: no
    part of vaelab reads it, so it would be silently ignored. One line naming the nearest existing key instead."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    groups = set(hydra_cfg.runtime.choices)
    added = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    for override in added:
        key = override.key_or_group
        if override.type in (OverrideType.ADD, OverrideType.FORCE_ADD) and "." not in key and key not in groups:
            known = [name for name in config if name != key]
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {near[0]}?" if near else f"the settings are {', '.join(known)}"
            raise VaelabError(f"+{key} is not a setting vaelab reads, so it would be ignored; {hint}")


def check_finite(config: object, key: str = "") -> None:
    """Raise a ``VaelabError`` naming the first key of a resolved config (dicts and lists) that holds NaN or an
    infinity: no setting of vaelab, Lightning or torch means anything with one."""
    if isinstance(config, float) and not math.isfinite(config):
        raise VaelabError(f"{key} must be a finite number, got {config!r}.")
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for name, value in items:
        check_finite(value, f"{key}[{name}]" if isinstance(name, int) else f"{key}.{name}" if key else str(name))


def check_sizes(key: str, values: object, length: int | None = None) -> list[int]:
    """``values`` as a list of layer sizes (integers >= 1, ``length`` of them if given), or a ``VaelabError``
    naming ``key``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise VaelabError(f"{key} must be a list of integers, got {values!r}.")
    if length is not None and len(values) != length:
        raise VaelabError(f"{key} must hold {length} integers, got {list(values)!r}.")
    for index, value in enumerate(values):
        check_number(f"{key}[{index}]", value, minimum=1, integer=True)
    return list(values)


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
