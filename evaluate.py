"""Evaluate checkpoints on the MNIST test split: `python evaluate.py ckpt_path=<file.ckpt>` or `runs=[...]`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

import vaelab.run.resume  # noqa: F401  (the ${if_null:...} resolver of conf/hydra)

os.environ.setdefault("VAELAB_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> list[dict] | None:
    from vaelab.cli import run_job
    from vaelab.evaluation import evaluate

    return run_job(evaluate, cfg)  # the metrics of every checkpoint evaluated (one, or each run compared)


if __name__ == "__main__":
    main()
