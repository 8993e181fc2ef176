"""The run's checkpoint files, named where the run folder's layout is (``vaelab.run.folder``): the configs say when
a checkpoint is saved, never what it is called, so ``resume=``, ``runs=`` and sweep summaries always find them."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from vaelab.run.folder import BEST_CHECKPOINT_NAME, LAST_CHECKPOINT, RunFolder


class RunCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` writing into ``<run_dir>/checkpoints``, its state kept under ModelCheckpoint's own key
    in the checkpoint (so checkpoints saved with Lightning's class resume with their best path)."""

    def __init__(self, run_dir: str, filename: str, **settings: object) -> None:
        super().__init__(dirpath=RunFolder(Path(run_dir)).checkpoints, filename=filename, **settings)

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)


class BestCheckpoint(RunCheckpoint):
    """The checkpoint of the epoch with the best ``monitor`` (what ``test`` and ``runs=`` evaluate)."""

    def __init__(self, run_dir: str, monitor: str = "val/loss", mode: str = "min") -> None:
        # Lightning's save_last follows the best epoch (it writes only when a new best is saved): not used.
        super().__init__(run_dir, BEST_CHECKPOINT_NAME, monitor=monitor, mode=mode, save_top_k=1,
                         auto_insert_metric_name=False, save_last=False)  # fmt: skip


class LastCheckpoint(RunCheckpoint):
    """The last checkpoint: the end of the latest training epoch, validated or not (what ``resume=`` takes)."""

    def __init__(self, run_dir: str) -> None:
        super().__init__(run_dir, Path(LAST_CHECKPOINT).stem, monitor=None, save_top_k=1, every_n_epochs=1,
                         enable_version_counter=False, save_on_train_epoch_end=True)  # fmt: skip
