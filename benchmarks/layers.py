"""Where a ``conv_vae`` training step goes, layer by layer, against this CPU's arithmetic ceiling.

Each layer of the default ``conv_vae`` runs alone on its real input shape (batch 128, channels_last, as in training):
forward and backward (the input's gradient too, except for the first layer, whose input is the images), timed as the
median of ``--repeats`` rounds of ``--steps`` steps. GFLOP/s counts 2 FLOP per multiply-add, forward and backward
(3x the forward, 2x for the first layer); the ceiling is a float32 matmul measured in the same run. Candidate
formulations of the costly layers run beside the layer they would replace, with their largest difference from it.

    python benchmarks/layers.py                      # float32 and bf16 autocast
    python benchmarks/layers.py --precision 32-true --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.machine import matmul_ceiling
from vaelab.models.networks import PixelLogits

BATCH = 128


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """A stride-2, 3x3, padding-1, output-padding-1 ``ConvTranspose2d`` weight ``[Cin, Cout, 3, 3]`` as the weight
    ``[4 Cout, Cin, 2, 2]`` of a stride-1 2x2 convolution whose output, pixel-shuffled by 2, is the same: output
    pixel (2i + a, 2j + b) takes input rows i (and i + 1 when a = 1) through kernel rows 1 (a = 0) or 2 and 0."""
    taps = {0: (1, None), 1: (2, 0)}  # output parity -> kernel index for input offsets 0 and 1
    in_channels, out_channels = weight.shape[:2]
    result = weight.new_zeros(out_channels, 2, 2, in_channels, 2, 2)
    for a in (0, 1):
        for b in (0, 1):
            for r, ky in enumerate(taps[a]):
                for c, kx in enumerate(taps[b]):
                    if ky is not None and kx is not None:
                        result[:, a, b, :, r, c] = weight[:, :, ky, kx].t()
    return result.reshape(out_channels * 4, in_channels, 2, 2)


class SubPixelConvTranspose(nn.Module):
    """``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` as a 2x2 convolution to 4x the channels and a pixel
    shuffle: 16 multiply-adds per output group instead of 9, in a dense stride-1 kernel."""

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(subpixel_weight(deconv.weight.detach()))
        self.bias = nn.Parameter(deconv.bias.detach().repeat_interleave(4))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        padded = F.pad(features, (0, 1, 0, 1))
        return F.pixel_shuffle(F.conv2d(padded, self.weight, self.bias), 2)


class PixelLogitsTaps(nn.Module):
    """The 32 -> 1 stride-1 transposed convolution as ``PixelLogits`` computes it without autograd (one matmul to the
    9 taps, 9 shifted adds), here with autograd: the candidate for training."""

    def __init__(self, layer: PixelLogits) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        columns = features.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        taps = torch.matmul(columns, self.layer.weight.reshape(channels, 9)).view(batch, height, width, 9)
        taps = F.pad(taps.permute(0, 3, 1, 2), (1, 1, 1, 1))  # [B, 9, H + 2, W + 2]
        logits = self.layer.bias.to(taps.dtype).view(1, 1, 1).expand(batch, height, width)
        for tap in range(9):
            dy, dx = tap // 3, tap % 3  # logits[y, x] += taps[tap][y + 1 - dy, x + 1 - dx], here in padded rows/columns
            logits = logits + taps[:, tap, 2 - dy : 2 - dy + height, 2 - dx : 2 - dx + width]
        return logits.unsqueeze(1)


def layers() -> list[tuple[str, nn.Module, tuple[int, ...], float, bool]]:
    """``(name, layer, input shape, multiply-adds per image, input needs a gradient)`` of the default conv_vae."""
    torch.manual_seed(0)
    return [
        ("Conv 1->32 (28->14)", nn.Conv2d(1, 32, 3, 2, 1), (1, 28, 28), 32 * 9 * 14 * 14, False),
        ("Conv 32->64 (14->7)", nn.Conv2d(32, 64, 3, 2, 1), (32, 14, 14), 64 * 32 * 9 * 7 * 7, True),
        ("ConvT 64->64 (7->14)", nn.ConvTranspose2d(64, 64, 3, 2, 1, 1), (64, 7, 7), 64 * 64 * 9 * 7 * 7, True),
        ("ConvT 64->32 (14->28)", nn.ConvTranspose2d(64, 32, 3, 2, 1, 1), (64, 14, 14), 64 * 32 * 9 * 14 * 14, True),
        ("ConvT 32->1 pixels (28)", PixelLogits(32), (32, 28, 28), 32 * 9 * 28 * 28, True),
    ]


class TapLogits(nn.Module):
    """``PixelLogits.tap_logits`` (the form evaluation runs without autograd) as a module, with autograd."""

    def __init__(self, layer: PixelLogits) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer.tap_logits(features)


def candidates(layer: nn.Module) -> dict[str, nn.Module]:
    """Other exact formulations of ``layer`` to time beside it."""
    if isinstance(layer, PixelLogits):
        return {"  as tap_logits": TapLogits(layer), "  as padded taps": PixelLogitsTaps(layer)}
    if isinstance(layer, nn.ConvTranspose2d) and layer.stride == (2, 2):
        return {"  as sub-pixel conv": SubPixelConvTranspose(layer)}
    return {}


def time_step(step: Callable[[], None], steps: int, repeats: int) -> float:
    """Median seconds of one call of ``step`` over ``repeats`` rounds of ``steps`` calls (after a warm-up)."""
    for _ in range(3):
        step()
    rounds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - started) / steps)
    return statistics.median(rounds)


def measure(precision: str, steps: int, repeats: int) -> dict:
    bf16 = precision == "bf16-mixed"
    peak = matmul_ceiling(torch.bfloat16 if bf16 else torch.float32)
    rows = []
    for name, layer, shape, macs, input_grad in layers():
        layer = layer.to(memory_format=torch.channels_last)
        inputs = torch.rand(BATCH, *shape).to(memory_format=torch.channels_last).requires_grad_(input_grad)
        reference = None
        for label, module in {name: layer, **candidates(layer)}.items():
            module = module.to(memory_format=torch.channels_last)

            def step(module: nn.Module = module, inputs: torch.Tensor = inputs) -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = module(inputs)
                out.float().square().mean().backward()

            seconds = time_step(step, steps, repeats)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = module(inputs).float()
            difference = 0.0 if reference is None else (out - reference).abs().max().item()
            reference = out if reference is None else reference
            flops = 2 * macs * BATCH * (3 if input_grad else 2)
            rows.append({"layer": label, "ms": round(seconds * 1e3, 2), "gflop_s": round(flops / seconds / 1e9, 1),
                         "peak_pct": round(100 * flops / seconds / 1e9 / peak, 1),
                         "max_difference": float(f"{difference:.2g}")})  # fmt: skip
    return {"precision": precision, "peak_gflop_s": round(peak, 1), "threads": torch.get_num_threads(), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"], choices=["32-true", "bf16-mixed"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(precision, args.steps, args.repeats) for precision in args.precision]
    if args.json:
        print(json.dumps(results))
        return
    for result in results:
        print(f"\n{result['precision']}: matmul ceiling {result['peak_gflop_s']} GFLOP/s, {result['threads']} threads, "
              f"batch {BATCH}, forward + backward")  # fmt: skip
        print(f"{'layer':<26}{'ms':>8}{'GFLOP/s':>9}{'% peak':>8}{'max diff':>10}")
        for row in result["rows"]:
            print(f"{row['layer']:<26}{row['ms']:>8.2f}{row['gflop_s']:>9.1f}{row['peak_pct']:>8.1f}"
                  f"{row['max_difference']:>10.2g}")  # fmt: skip


if __name__ == "__main__":
    main()
