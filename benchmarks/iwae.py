"""Time the IWAE estimate (K=100) over the 10k MNIST test images of a checkpoint, in chunks of 300 decodes (the
default) and of 10,000 (the chunking before, whose buffers glibc unmapped on every call).

    python benchmarks/iwae.py <checkpoint.ckpt> [data_dir]
"""

import sys
import time

import torch

from vaelab.checkpoints import load_model
from vaelab.data import MNISTDataModule
from vaelab.models.probability import iwae_log_likelihood
from vaelab.runtime import tune_malloc


def main() -> None:
    tune_malloc()
    model = load_model(sys.argv[1]).eval()
    data = MNISTDataModule(data_dir=sys.argv[2] if len(sys.argv) > 2 else "../shared/data", download=False)
    data.prepare_data()
    data.setup("test")
    images, labels = data.test_set.images, data.test_set.labels
    for max_decodes in (300, 10_000):
        torch.manual_seed(42)
        started = time.perf_counter()
        log_likelihood = iwae_log_likelihood(model, images, labels if model.num_classes else None, 100, max_decodes)
        seconds = time.perf_counter() - started
        print(f"max_decodes={max_decodes}: {seconds:.1f} s, iwae_nll {-log_likelihood.mean().item():.3f} "
              f"over {len(log_likelihood)} images", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
