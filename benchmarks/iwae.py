"""Time the IWAE estimate over MNIST test images in float32 and in bf16 autocast, for several seeds: the seconds, the
share of this CPU's arithmetic ceiling (a matmul of the same precision, measured in the same run), and the estimate
per seed, so a precision's shift can be held against the seed-to-seed spread.

    python benchmarks/iwae.py <checkpoint.ckpt | conv_vae | cond_conv_vae | vae> [--images 10000] [--samples 100]
                              [--seeds 1 2 3] [--precision 32-true bf16-mixed]

A model name times untrained weights (the arithmetic is the same; the estimate is not a result). Precisions and
seeds alternate, so a drift of the machine's speed touches each alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from vaelab.data import IDXDataModule
from vaelab.machine import matmul_ceiling
from vaelab.models import VAE, CondConvVAE, ConvVAE
from vaelab.models.probability import iwae_log_likelihood
from vaelab.process import tune_malloc
from vaelab.run.checkpoints import load_model

UNTRAINED = {"vae": VAE, "conv_vae": ConvVAE, "cond_conv_vae": CondConvVAE}
DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}


def decoder_flop(model: torch.nn.Module) -> float:
    """FLOP of one decode (2 per multiply-add), counted from the decoder's layers."""
    macs = 0
    hooks = []

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Linear):
            macs += module.in_features * module.out_features
        elif isinstance(module, torch.nn.ConvTranspose2d | torch.nn.Conv2d):
            spatial = (inputs[0] if isinstance(module, torch.nn.ConvTranspose2d) else output).shape[-2:]
            kernel = module.kernel_size[0] * module.kernel_size[1]
            macs += module.in_channels * module.out_channels * kernel * spatial[0] * spatial[1] // module.groups

    for module in model.decoder.modules():
        hooks.append(module.register_forward_hook(count))
    with torch.no_grad():
        model.decode_logits(torch.zeros(1, model.latent_dim), torch.zeros(1, dtype=torch.long))
    for hook in hooks:
        hook.remove()
    return 2.0 * macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a checkpoint, or vae / conv_vae / cond_conv_vae for untrained weights")
    parser.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR", "data"))
    parser.add_argument("--images", type=int, default=10_000, help="the first N test images")
    parser.add_argument("--samples", type=int, default=100, help="K, importance samples per image")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--precision", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    args = parser.parse_args()

    tune_malloc()
    model = (UNTRAINED[args.source]() if args.source in UNTRAINED else load_model(args.source)).eval()
    data = IDXDataModule(data_dir=args.data_dir, download=False)
    data.prepare_data()
    data.setup("test")
    images, labels = data.test_set.images[: args.images], data.test_set.labels[: args.images]
    flop = decoder_flop(model) * len(images) * args.samples
    peaks = {precision: matmul_ceiling(DTYPES[precision]) for precision in args.precision}
    print(f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, {len(images)} images, "
          f"K={args.samples}, {flop / 1e12:.2f} TFLOP of decodes; matmul ceiling "
          + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items()), flush=True)  # fmt: skip
    results: dict[str, list[tuple[float, float]]] = {precision: [] for precision in args.precision}
    for seed in args.seeds:
        for precision in args.precision:
            torch.manual_seed(seed)
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                estimate = -iwae_log_likelihood(model, images, labels if model.num_classes else None, args.samples)
            seconds = time.perf_counter() - started
            results[precision].append((seconds, estimate.mean().item()))
            share = 100 * flop / seconds / 1e9 / peaks[precision]
            print(f"seed {seed} {precision:<10} {seconds:7.1f} s  {share:5.1f} % of its ceiling  "
                  f"iwae_nll {estimate.mean().item():.4f}", flush=True)  # fmt: skip
    print(f"\n{'precision':<12}{'seconds, median (range)':>26}{'iwae_nll mean':>15}{'seed std':>10}")
    for precision, rows in results.items():
        seconds, estimates = [s for s, _ in rows], [e for _, e in rows]
        spread = statistics.stdev(estimates) if len(estimates) > 1 else float("nan")
        timing = f"{statistics.median(seconds):.1f} ({min(seconds):.1f}-{max(seconds):.1f})"
        print(f"{precision:<12}{timing:>26}{statistics.mean(estimates):>15.4f}{spread:>10.4f}")


if __name__ == "__main__":
    main()
