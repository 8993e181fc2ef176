"""Save the training state when a run is interrupted (Ctrl-C or SIGTERM), so it can be resumed."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from vaelab.run.folder import RunFolder


class InterruptCheckpoint(pl.Callback):
    """On KeyboardInterrupt or SIGTERM during fit, write the current state (mid-epoch included) as the run's last
    checkpoint (an interrupt of the test after fit writes none); other exceptions (a non-finite loss, a bug) save
    nothing: the last good checkpoint stays as it was."""

    def __init__(self, run_dir: str) -> None:
        self.path = RunFolder(Path(run_dir)).last_checkpoint
        self._ctrl_c = False
        self._previous_handler: object = None

    # Python raises Ctrl-C's KeyboardInterrupt in whatever code runs at that moment; inside a finalizer (a weakref
    # callback of the garbage collector) it is printed as "Exception ignored" with a traceback and lost, and the
    # run trains on. While fitting, Ctrl-C is noted and raised at the next batch's end (a second one at once).
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        in_main = threading.current_thread() is threading.main_thread()
        if stage == "fit" and in_main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._ctrl_c = False
            self._previous_handler = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous_handler is not None and signal.getsignal(signal.SIGINT) == self._on_ctrl_c:
            signal.signal(signal.SIGINT, self._previous_handler)
        self._previous_handler = None

    def _on_ctrl_c(self, signum: int, frame: object) -> None:
        if self._ctrl_c:
            raise KeyboardInterrupt
        self._ctrl_c = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if self._ctrl_c:
            raise KeyboardInterrupt

    on_validation_batch_end = on_train_batch_end

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._ctrl_c = False  # handled: Lightning stops the run
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.sanity_checking:
            return
        if trainer.state.fn != TrainerFn.FITTING:  # the test after fit holds the best checkpoint's weights, not the
            return  # training state: last.ckpt stays the end of the fit
        if trainer.validating:
            validation_restarts_on_resume(trainer)
        trainer.save_checkpoint(self.path, weights_only=False)  # the full training state (saving, not loading)
        rank_zero_info(f"Interrupted: training state saved to {self.path}")


def validation_restarts_on_resume(trainer: pl.Trainer) -> None:
    """Make an interrupted validation run again, whole, on resume. Lightning (2.6) reruns it only when the interrupt
    landed inside ``validation_step``; one between batches reads like a finished validation. The one place vaelab
    writes Lightning's loop state (no public API; ``test_ctrl_c_during_validation_resumes_to_the_uninterrupted_history``
    fails if Lightning moves it)."""
    progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress.total
    progress.ready = progress.started = progress.completed + 1
    progress.processed = progress.completed
