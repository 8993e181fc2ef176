"""Hydra's handle on vaelab's Optuna sweeper (``vaelab.search.sweeper``). Hydra imports every plugin module at every
start: this one imports nothing optional, so a plain install (no ``sweeps`` extra) starts without warnings, and
``hparams_search=optuna`` without Optuna is one line naming the extra."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    """Built by Hydra from ``hydra/sweeper=vaelab_optuna``; it is the implementation that comes back."""

    def __new__(cls, **settings: Any) -> Sweeper:  # type: ignore[misc]
        from vaelab.errors import exit_with_error, require

        try:
            require("optuna", extra="sweeps", purpose="hparams_search=optuna")
        except Exception as error:  # a VaelabError: one line, as train.py gives for its own
            exit_with_error(error)
        from vaelab.search.sweeper import OptunaSweeper as Implementation

        return Implementation(**settings)


# Hydra registers concrete plugin classes only (set after the class: ABCMeta computes it when it makes the class).
OptunaSweeper.__abstractmethods__ = frozenset()
