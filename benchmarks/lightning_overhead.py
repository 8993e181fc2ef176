"""Where Lightning's time goes, if anywhere: the plain loop of ``throughput.py`` against ``trainer.fit`` with
vaelab's callbacks and logger, without the progress bar, without the logger, and with neither nor any callback,
alternating, ``--rounds`` times each; median (range) of images/s per variant.

    python benchmarks/lightning_overhead.py                                   # conv_vae, the default precision
    python benchmarks/lightning_overhead.py --model vae trainer.precision=32-true
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import hydra.utils
import lightning.pytorch as pl
from omegaconf import DictConfig
from throughput import MODELS, WARMUP_STEPS, StepTimer, load_config, time_plain_loop

from vaelab.builders import build_model, build_trainer, instantiate_group
from vaelab.process import tune_malloc


def time_fit(cfg: DictConfig, datamodule, steps: int, callbacks: bool, logger: bool, bar: bool) -> float:
    """Images/s of ``trainer.fit`` training steps with the callbacks, logger and progress bar asked for."""
    pl.seed_everything(cfg.seed, verbose=False)
    timer = StepTimer(WARMUP_STEPS)
    chosen = instantiate_group(cfg.callbacks) if callbacks else []
    chosen = [c for c in chosen if bar or not isinstance(c, pl.callbacks.ProgressBar)]
    trainer = build_trainer(
        cfg.trainer, callbacks=[*chosen, timer], logger=(instantiate_group(cfg.logger) or False) if logger else False,
        max_steps=WARMUP_STEPS + steps, max_epochs=-1, num_sanity_val_steps=0, limit_val_batches=0,
        enable_model_summary=False, enable_progress_bar=bar, enable_checkpointing=callbacks,
    )  # fmt: skip
    trainer.fit(build_model(cfg.model), datamodule=datamodule)
    return timer.images / (timer.ended - timer.started)


VARIANTS = {
    "fit, vaelab's callbacks and logger": dict(callbacks=True, logger=True, bar=True),
    "fit, no progress bar": dict(callbacks=True, logger=True, bar=False),
    "fit, no logger": dict(callbacks=True, logger=False, bar=True),
    "fit, no callback, logger or bar": dict(callbacks=False, logger=False, bar=False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conv_vae", choices=MODELS)
    parser.add_argument("--steps", type=int, default=150, help=f"timed steps per round (after {WARMUP_STEPS})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.precision=32-true")
    args = parser.parse_args()
    tune_malloc()
    rates: dict[str, list[float]] = {"plain loop": [], **{name: [] for name in VARIANTS}}
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = load_config(args.model, output_dir, args.overrides)
        datamodule = hydra.utils.instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        for _ in range(args.rounds):  # alternating: this VM's speed drifts between runs
            rates["plain loop"].append(time_plain_loop(cfg, datamodule, args.steps))
            for name, variant in VARIANTS.items():
                rates[name].append(time_fit(cfg, datamodule, args.steps, **variant))
    setting = " ".join(args.overrides) or "default precision"
    print(f"\n{args.model}, {setting}, {args.rounds} rounds of {args.steps} steps")
    print("| variant | img/s, median (range) |\n| --- | ---: |")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f}) |")


if __name__ == "__main__":
    main()
