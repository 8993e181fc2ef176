"""Save the training state when a run is interrupted (Ctrl-C or SIGTERM), so it can be resumed."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class InterruptCheckpoint(pl.Callback):
    """On KeyboardInterrupt or SIGTERM, write the current state (mid-epoch included) to ``dirpath/filename``.

    Other exceptions (a non-finite loss, a bug) save nothing: the last good checkpoint stays as it was.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the full training state (saving, not loading)
        rank_zero_info(f"Interrupted: training state saved to {self.path}")
