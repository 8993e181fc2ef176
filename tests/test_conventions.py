"""The conventions every number carries: the pixels a model sees (``data.binarize``) and its likelihood
(``model.likelihood``), through training, resume, evaluation, comparisons and sweeps."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from helpers import NO_FIGURES, TINY_TEST, compose_config, run_inline, synthetic_digits, tiny_data_overrides
from vaelab.data import IDXDataModule
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate

TINY = ["model=vae", "model.hidden_dims=[32]", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "data.batch_size=50", "logger=none", *NO_FIGURES]  # fmt: skip
EVAL = ["iwae_samples=3", "projector=false", "figures.num_points=50", "figures.grid_size=3",
        "trainer.limit_test_batches=1"]  # fmt: skip


def datamodule(data_dir: Path, **settings) -> IDXDataModule:
    module = IDXDataModule(data_dir=str(data_dir), download=False, val_size=100, batch_size=32, **settings)
    module.prepare_data()
    module.setup()
    return module


def is_binary(images: torch.Tensor) -> bool:
    return bool(((images == 0) | (images == 1)).all())


def test_binarized_pixels_by_each_convention(tiny_mnist: Path) -> None:
    grey = datamodule(tiny_mnist)
    assert not is_binary(grey.test_set.images)  # none: the grey levels, as the study had them
    threshold = datamodule(tiny_mnist, binarize="threshold")
    assert torch.equal(threshold.test_set.images, (grey.test_set.images > 0.5).float())
    assert is_binary(next(iter(threshold.train_dataloader()))[0])

    dynamic = datamodule(tiny_mnist, binarize="dynamic", binarize_seed=5, shuffle_seed=1)
    # Validation and test: drawn once from the recorded seed, so every model is scored on the same digits.
    again = datamodule(tiny_mnist, binarize="dynamic", binarize_seed=5, shuffle_seed=2)
    assert torch.equal(dynamic.test_set.images, again.test_set.images)
    assert torch.equal(dynamic.val_set.images, again.val_set.images) and is_binary(dynamic.val_set.images)
    other = datamodule(tiny_mnist, binarize="dynamic", binarize_seed=6)
    assert not torch.equal(dynamic.test_set.images, other.test_set.images)
    # Each pixel a Bernoulli draw of its grey level: the mean of the drawn test set is the grey levels' mean.
    expected, _ = synthetic_digits(TINY_TEST, seed=1)
    assert dynamic.test_set.images.mean().item() == pytest.approx(expected.mean() / 255, abs=0.01)
    # Training: drawn anew each epoch, the same draws for the same seed and epoch (a resume serves the same).
    loader = dynamic.train_dataloader()
    first = next(iter(loader))[0]
    loader.sampler.set_epoch(0)  # as Lightning does before each epoch
    assert is_binary(first) and torch.equal(first, next(iter(loader))[0])
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))[0])
    assert not torch.equal(first, next(iter(again.train_dataloader()))[0])  # another run's seed, other draws
    with pytest.raises(VaelabError, match="^data.binarize=otsu is not a binarization vaelab has; choose from none, "):
        datamodule(tiny_mnist, binarize="otsu")


def test_each_convention_trains_resumes_evaluates_and_sweeps(tiny_mnist: Path, tmp_path: Path) -> None:
    """A sweep over the conventions; each job's metrics.json and the sweep's summary say its convention; a resume
    keeps it (another is one line); evaluation scores on the pixels the run saw and names its IWAE figure for what
    it is; runs of different conventions are not compared."""
    sweep = tmp_path / "sweep"
    swept = run_inline("train.py", "-m", *TINY, "trainer.max_epochs=1", "data.binarize=dynamic,threshold,none",
                       "model.likelihood=bernoulli,continuous_bernoulli", *tiny_data_overrides(tiny_mnist),
                       f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert swept.returncode == 0, swept.stderr[-3000:]
    jobs = {(m["binarize"], m["likelihood"]): sweep / str(n)
            for n in range(6) if (m := json.loads((sweep / str(n) / "metrics.json").read_text()))}  # fmt: skip
    assert len(jobs) == 6
    assert all(json.loads((job / "metrics.json").read_text())["status"] == "completed" for job in jobs.values())
    from vaelab.sweep.summary import summarise

    rows = {(row["binarize"], row["likelihood"]) for row in summarise(sweep)}
    assert rows == set(jobs)

    dynamic = jobs[("dynamic", "bernoulli")]
    resumed = run_inline("train.py", f"resume={dynamic}", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((dynamic / "metrics.json").read_text())["epochs"] == 2
    refused = run_inline("train.py", f"resume={dynamic}", "trainer.max_epochs=3", "data.binarize=threshold")
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
        "error: the checkpoint was trained with data.binarize=dynamic data.binarize_seed=0: a run goes on with the "
        "pixels it started with (start a new run for another convention)."
    )

    def scored(job: Path, *more: str) -> dict:
        overrides = [f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}", *EVAL, *more, *tiny_data_overrides(tiny_mnist)]
        (result,) = evaluate(
            compose_config("eval", overrides, tmp_path / "eval" / "-".join([job.name, *more]).replace("=", "_"))
        )
        return result

    # Binarized pixels, or a density of grey levels: -log p(x) in nats; a Bernoulli of grey levels: its bound only.
    for (binarize, likelihood), job in jobs.items():
        result = scored(job)
        name = "iwae_bce_bound" if (binarize, likelihood) == ("none", "bernoulli") else "iwae_nll"
        assert (result["binarize"], result["likelihood"]) == (binarize, likelihood)
        assert math.isfinite(result[name]) and ({"iwae_nll", "iwae_bce_bound"} - {name}).isdisjoint(result)
    with pytest.raises(VaelabError, match="data.binarize=threshold: the checkpoint was trained with data.binarize="):
        scored(dynamic, "data.binarize=threshold")
    runs = f"runs=[{dynamic},{jobs[('threshold', 'bernoulli')]}]"
    with pytest.raises(VaelabError, match="these runs' numbers do not compare"):
        evaluate(compose_config("eval", [runs, *EVAL, *tiny_data_overrides(tiny_mnist)], tmp_path / "mixed"))
    assert not (tmp_path / "mixed").exists()
    same = f"runs=[{dynamic},{jobs[('dynamic', 'continuous_bernoulli')]}]"
    with pytest.raises(VaelabError, match="model.likelihood=continuous_bernoulli"):
        evaluate(compose_config("eval", [same, *EVAL, *tiny_data_overrides(tiny_mnist)], tmp_path / "mixed"))
    with (tmp_path / "eval" / dynamic.name / "metrics.json").open() as handle:
        assert json.load(handle)["binarize_seed"] == 0
    assert list(csv.DictReader((sweep / "summary.csv").open()))[0]["binarize"] in {"dynamic", "threshold", "none"}
