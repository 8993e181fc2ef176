"""Train a VAE on MNIST. `python train.py --help` lists the config groups and options."""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from vaelab.run.resume import with_run_overrides

os.environ.setdefault("VAELAB_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from vaelab.cli import run_job
    from vaelab.training import train

    metrics = run_job(train, cfg)  # None: a sweep job that failed (recorded in its folder)
    # optimized_metric is checked against the metrics a run logs before it trains (training.check_optimized_metric).
    return metrics.get(cfg.get("optimized_metric")) if metrics else None


if __name__ == "__main__":
    sys.argv = with_run_overrides(sys.argv)  # resume=<run> goes on with the run's own overrides
    main()
