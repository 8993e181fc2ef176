"""Training throughput of each model: a minimal plain PyTorch loop vs the Lightning Trainer.

Both run in one process over the same in-memory MNIST training split, the same model class built
from ``conf/model/<name>.yaml``, batch ``data.batch_size`` (128) and Adam. The Lightning side uses
vaelab's real data module, default callbacks (checkpointing, figures, progress bar) and the
TensorBoard logger; only training steps are timed (after warm-up), so validation and figure
drawing at epoch ends are excluded from the images/s and reported separately by ``--eval``.

    python benchmarks/throughput.py                      # all models, table
    python benchmarks/throughput.py --models conv_vae --steps 200 --json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import hydra.utils
import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import vaelab  # noqa: F401  (warning filters)
from vaelab.builders import build_model, build_trainer, instantiate_group
from vaelab.hydra_compat import version_base
from vaelab.machine import resolve_precision
from vaelab.process import tune_malloc

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODELS = ("vae", "conv_vae", "cond_conv_vae")
WARMUP_STEPS = 10


def load_config(model: str, output_dir: str, overrides: list[str]) -> DictConfig:
    os.environ.setdefault("VAELAB_ROOT", str(PROJECT_ROOT))
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), **version_base()):
        return compose(config_name="train", overrides=[f"model={model}", f"paths.output_dir={output_dir}", *overrides])


class StepTimer(pl.Callback):
    """Wall time from the start of batch ``start_step`` to the end of the last batch of the run."""

    def __init__(self, start_step: int) -> None:
        self.start_step = start_step
        self.started = self.ended = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.start_step:
            synchronize(pl_module.device)
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self.start_step:
            self.images += len(batch[0])

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)  # a GPU runs behind the host: the time is the GPU's
        self.ended = time.perf_counter()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_plain_loop(cfg: DictConfig, datamodule, steps: int) -> float:
    """Images/s of the bare loop: shuffled in-memory batches, forward (under bf16 autocast when the trainer's
    precision is bf16-mixed, as Lightning runs it), backward, Adam step."""
    precision, _ = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device).train()
    optimizer = model.configure_optimizers()
    images, labels = datamodule.train_set.images.to(device), datamodule.train_set.labels.to(device)
    batch_size = cfg.data.batch_size
    order = torch.randperm(len(labels), device=device)
    started = 0.0
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            started = time.perf_counter()
        index = order[(step * batch_size) % (len(labels) - batch_size) :][:batch_size]
        with autocast:
            loss = model.loss_terms(images[index], labels[index])["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - started)


def time_lightning(cfg: DictConfig, datamodule, steps: int) -> float:
    """Images/s of ``trainer.fit`` training steps with vaelab's callbacks and logger."""
    pl.seed_everything(cfg.seed, verbose=False)
    model = build_model(cfg.model)
    timer = StepTimer(WARMUP_STEPS)
    trainer = build_trainer(
        cfg.trainer,
        callbacks=[*instantiate_group(cfg.callbacks), timer],
        logger=instantiate_group(cfg.logger) or False,
        max_steps=WARMUP_STEPS + steps,
        max_epochs=-1,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return timer.images / (timer.ended - timer.started)


def time_test_split(cfg: DictConfig, datamodule) -> float:
    """Seconds for ``trainer.test`` over the whole test split (recon, KL, ELBO per image)."""
    model = build_model(cfg.model)
    trainer = build_trainer(
        cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False, enable_model_summary=False
    )
    started = time.perf_counter()
    trainer.test(model, datamodule=datamodule, verbose=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--steps", type=int, default=200, help=f"timed training steps per loop (after {WARMUP_STEPS} warm-up)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each loop; the best round counts")
    parser.add_argument("--eval", action="store_true", help="also time evaluation of the 10k test images")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--no-malloc-tuning", action="store_true", help="leave glibc's allocator at its defaults (the 'before')"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.batch_size=256 trainer=gpu")
    args = parser.parse_args()

    if not args.no_malloc_tuning:
        tune_malloc()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as output_dir:
        for model_name in args.models:
            cfg = load_config(model_name, output_dir, args.overrides)
            datamodule = hydra.utils.instantiate(cfg.data)
            datamodule.prepare_data()
            datamodule.setup("fit")
            # Alternate the two loops and keep each one's best round: this 2-core VM's speed drifts by
            # +-15 % between runs, and the best round is the least disturbed one.
            plain = lightning = 0.0
            for _ in range(args.repeats):
                plain = max(plain, time_plain_loop(cfg, datamodule, args.steps))
                lightning = max(lightning, time_lightning(cfg, datamodule, args.steps))
            entry = {
                "lightning_img_s": round(lightning, 1),
                "plain_img_s": round(plain, 1),
                "ratio": round(lightning / plain, 3),
                "epoch_s_estimate": round(len(datamodule.train_set) / lightning, 1),  # training steps only
            }
            if args.eval:
                entry["test_eval_s"] = round(time_test_split(cfg, datamodule), 2)
            results[model_name] = entry

    if args.json:
        print(json.dumps(results))
        return
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, batch {cfg.data.batch_size}, "
        f"precision {precision[0]} ({precision[1]}), "
        f"best of {args.repeats} x {args.steps} steps, malloc tuning {'off' if args.no_malloc_tuning else 'on'}"
    )
    header = f"{'model':<15}{'lightning img/s':>17}{'plain img/s':>13}{'ratio':>7}{'epoch s':>9}"
    print(header + ("  test eval s" if args.eval else ""))
    for name, entry in results.items():
        line = (
            f"{name:<15}{entry['lightning_img_s']:>17.0f}{entry['plain_img_s']:>13.0f}"
            f"{entry['ratio']:>7.2f}{entry['epoch_s_estimate']:>9.1f}"
        )
        print(line + (f"{entry['test_eval_s']:>14.2f}" if args.eval else ""))


if __name__ == "__main__":
    main()
