"""A run's record says exactly what happened: the last epoch is saved whatever the validation cadence, a resume
that trains nothing changes nothing, evaluation counts each completed run once and names what it left out, and a
folder holds one kind of thing (a run or a sweep, never one inside the other)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from helpers import NO_FIGURES, compose_config, run_inline, tiny_data_overrides
from test_run_safety import one_error_line, snapshot
from vaelab.errors import VaelabError
from vaelab.training import train

TINY = ["model=vae", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "data.batch_size=50",
        "logger=csv", *NO_FIGURES]  # fmt: skip


def history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("every, epochs", [(2, 3), (5, 2)])
def test_last_checkpoint_is_the_last_epoch_whatever_the_validation_cadence(
    every: int, epochs: int, tiny_mnist: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cadence = [f"trainer.check_val_every_n_epoch={every}", f"trainer.max_epochs={epochs}"]
    train(compose_config("train", [*TINY, *cadence, *tiny_data_overrides(tiny_mnist)], run))
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (epochs - 1, 2 * epochs)
    # val/* only in the rows of epochs that validated (not the last validation's values carried forward).
    validated = [row["epoch"] for row in history(run) if row["val/loss"]]
    assert validated == [str(epoch) for epoch in range(epochs) if (epoch + 1) % every == 0]


def test_a_resume_that_trains_nothing_changes_nothing(tiny_mnist: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_inline("train.py", *TINY, "trainer.max_epochs=2", *tiny_data_overrides(tiny_mnist),
                        f"hydra.run.dir={run}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    before = snapshot(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "train/loss" in metrics and metrics["fit_seconds"] > 0
    one_error_line(run_inline("train.py", f"resume={run}"), "already trained 2 epochs", "trainer.max_epochs=3")
    assert snapshot(run) == before
    with pytest.raises(VaelabError, match="already trained 2 epochs"):
        train(compose_config("train", [*TINY, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2",
                                       *tiny_data_overrides(tiny_mnist)], tmp_path / "other"))  # fmt: skip
