"""Hydra's handle on vaelab's Optuna sweeper (``vaelab.sweep.sweeper``). Hydra imports every plugin module at every
start: this one imports nothing optional, so a plain install (no ``sweeps`` extra) starts without warnings, and
``hparams_search=optuna`` without Optuna is one line naming the extra."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper

from vaelab.exits import ends_on_user_error


class OptunaSweeper(Sweeper):
    """Built by Hydra from ``hydra/sweeper=vaelab_optuna``; it is the implementation that comes back."""

    @ends_on_user_error  # no Optuna: one line naming the extra, as train.py gives for its own errors
    def __new__(cls, **settings: Any) -> Sweeper:  # type: ignore[misc]
        from hydra_plugins.vaelab_optuna_sweeper.config import OptunaSweeperConf
        from vaelab.targets import require

        OptunaSweeperConf.check(settings)
        require("optuna", extra="sweeps", purpose="hparams_search=optuna")
        from vaelab.sweep.sweeper import OptunaSweeper as Implementation

        return Implementation(**settings)


# Hydra registers concrete plugin classes only (set after the class: ABCMeta computes it when it makes the class).
OptunaSweeper.__abstractmethods__ = frozenset()
