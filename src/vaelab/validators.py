"""The checks of single values a user sets (numbers, seeds, layer sizes, folders, added keys): each failure is one
``VaelabError`` line naming the key."""

import difflib
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError


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


def check_choice(key: str, value: object, choices: Sequence[str], what: str) -> None:
    """``value`` must be one of ``choices``; else one ``VaelabError`` line naming ``key``, ``what`` it is and them."""
    if value not in choices:
        raise VaelabError(f"{key}={value} is not a {what} vaelab has; choose from {', '.join(choices)}")


def check_added_keys(config: Any, overrides: Sequence[str], groups: Collection[str]) -> None:
    """A top-level key that the command line's ``overrides`` add (``+seeed=3``) and that is none of the config
    ``groups`` is a misspelling: no part of vaelab reads it, so it would be silently ignored. One line naming the
    nearest existing key instead."""
    from hydra.core.override_parser.types import OverrideType

    from vaelab.run.overrides import parse_all  # Hydra's grammar, loaded only when a command checks its overrides

    for override in parse_all(list(overrides)):
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
