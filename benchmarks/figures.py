"""Time the figures of one evaluation (every standard figure drawn on 2,000 images, saved as PNGs and written to
TensorBoard), as ``evaluate.py`` makes them for each checkpoint; the median and range of ``repeats`` runs.

    python benchmarks/figures.py [repeats]

Untrained weights and random images: drawing costs the same for any weights (the figures are not a result).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaelab.evaluation.scoring import save_figures
from vaelab.loggers.tensorboard import TensorBoardLogger
from vaelab.models import CondConvVAE, ConvVAE

SETTINGS = {"num_points": 2000, "grid_size": 20, "digits": None, "interpolation_steps": 10}


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    images, labels = torch.rand(2000, 1, 28, 28), torch.arange(2000) % 10
    metrics = dict.fromkeys(("recon", "kl", "loss", "loss_kl_averaged", "iwae_nll"), 1.0)
    print(f"torch threads {torch.get_num_threads()}, {repeats} runs each")
    for model in (ConvVAE(latent_dim=2).eval(), CondConvVAE(latent_dim=2).eval()):
        seconds = []
        for _ in range(repeats + 1):  # the first run warms up (imports, kernels) and is not counted
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                drawn = save_figures(model, images, labels, Path(folder) / "figures", SETTINGS)
                TensorBoardLogger(str(Path(folder) / "tensorboard"), run="eval").publish_evaluation(metrics, drawn, 0)
                seconds.append(time.perf_counter() - started)
        runs = seconds[1:]
        print(f"{model.model_name}: {len(drawn)} figures, {statistics.median(runs):.2f} s "
              f"(range {min(runs):.2f}-{max(runs):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
