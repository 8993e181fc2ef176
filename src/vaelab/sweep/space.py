"""The search space: Hydra's sweep override syntax to Optuna distributions, and a trial's values back to overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna import Trial
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from vaelab.errors import VaelabError
from vaelab.run.overrides import parse_all


def format_value(value: Any) -> str:
    """A Python value as Hydra override text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{format_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str) and (not value or any(c in value for c in " ,()[]{}:=\"'\\")):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def distribution_of(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override: ``choice(...)``, ``range(...)``, ``interval(...)``,
    optionally ``tag(log, ...)``. Choices that are not plain values (lists, dicts) are searched as their
    override text."""
    sweep = override.value()
    log = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        choices = list(sweep.list)
        plain = all(choice is None or isinstance(choice, (bool, int, float, str)) for choice in choices)
        return CategoricalDistribution(choices if plain else [format_value(choice) for choice in choices])
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(sweep.step), log=log)
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step), log=log)
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise VaelabError(f"{override.input_line}: not a search space (use choice, range or interval).")


def split_search_space(lines: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Overrides (``key=value`` text) -> the search space (sweep overrides) and the fixed overrides (the rest)."""
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in parse_all(lines):
        if override.is_sweep_override():
            try:
                space[override.get_key_element()] = distribution_of(override)
            except ValueError as error:
                raise VaelabError(f"{override.input_line}: {error}") from None
        else:
            fixed.append(override.input_line or f"{override.get_key_element()}={override.get_value_element_as_str()}")
    return space, fixed


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    """A trial's parameters as Hydra overrides (categorical override texts go in as they are)."""
    return [f"{key}={value if isinstance(value, str) and value[:1] in '[{' else format_value(value)}"
            for key, value in params.items()]  # fmt: skip


def suggest(trial: Trial, name: str, distribution: BaseDistribution) -> None:
    """Ask ``trial`` for its value of ``name`` from ``distribution`` (Optuna records it in ``trial.params``)."""
    if isinstance(distribution, CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    elif isinstance(distribution, IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    else:
        trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
