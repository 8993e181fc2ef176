"""Time the IWAE estimate (K=100) over the 10k MNIST test images, with the fp32 matmul peak of the same run: the
decoder's last layer as vaelab runs it without autograd (``PixelLogits``: one matmul and shifted adds) and as the
plain transposed convolution it replaced (the time before).

    python benchmarks/iwae.py <checkpoint.ckpt | conv_vae | cond_conv_vae | vae> [data_dir] [samples]

A model name times untrained weights (the arithmetic is the same; the estimate is not a result).
"""

import os
import sys
import time

import torch
from torch import nn

from vaelab.data import IDXDataModule
from vaelab.models import VAE, CondConvVAE, ConvVAE
from vaelab.models.networks import PixelLogits
from vaelab.models.probability import iwae_log_likelihood
from vaelab.process import tune_malloc
from vaelab.run.checkpoints import load_model

UNTRAINED = {"vae": VAE, "conv_vae": ConvVAE, "cond_conv_vae": CondConvVAE}


def fp32_peak(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 ``size`` x ``size`` matrix product on this process's threads."""
    a = torch.randn(size, size)
    a @ a
    started = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return repeats * 2 * size**3 / (time.perf_counter() - started) / 1e9


def main() -> None:
    tune_malloc()
    source = sys.argv[1]
    model = (UNTRAINED[source]() if source in UNTRAINED else load_model(source)).eval()
    data = IDXDataModule(data_dir=sys.argv[2] if len(sys.argv) > 2 else os.environ.get("VAELAB_DATA_DIR", "data"),
                         download=False)  # fmt: skip
    samples = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    data.prepare_data()
    data.setup("test")
    images, labels = data.test_set.images, data.test_set.labels
    print(f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, "
          f"fp32 peak {fp32_peak():.1f} GFLOP/s", flush=True)  # fmt: skip
    fast_forward = PixelLogits.forward
    variants = (("PixelLogits (now)", fast_forward), ("ConvTranspose2d (before)", nn.ConvTranspose2d.forward))
    for name, forward in variants:
        PixelLogits.forward = forward  # type: ignore[method-assign]
        torch.manual_seed(42)
        started = time.perf_counter()
        log_likelihood = iwae_log_likelihood(model, images, labels if model.num_classes else None, samples)
        seconds = time.perf_counter() - started
        print(f"{name}: {seconds:.1f} s, iwae_nll {-log_likelihood.mean().item():.3f} over {len(log_likelihood)} "
              f"images, K={samples}", flush=True)  # fmt: skip
    PixelLogits.forward = fast_forward  # type: ignore[method-assign]
    print(f"fp32 peak after: {fp32_peak():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
