"""The facts that make a run's numbers specific to its machine (device, torch build, CPU instruction set,
threads), for ``metrics.json`` and reports."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def machine_facts(device: torch.device) -> dict[str, str | int]:
    """The device, torch build, threads and the CPU instruction set oneDNN's kernels use: their rounding differs
    between AVX2 and AVX-512, so a seeded run ends elsewhere on another kind of CPU (docs/results.md)."""
    threads, cpu_name = torch.get_num_threads(), cpuinfo("model name") or platform.processor() or platform.machine()
    cpu = f"CPU {cpu_name}, {threads} thread{'s' * (threads > 1)}"
    facts: dict[str, str | int] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,  # a short name, for reports
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # oneDNN picks its kernels by finer features than the capability: two AVX512 machines can differ here.
        "cpu_features": " ".join(cpu_features()),
        "threads": threads,
    }
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):  # a cap the user set on oneDNN's instruction set
        facts["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if device.type == "cuda":
        facts["cuda"] = str(torch.version.cuda)
    return facts


def matmul_ceiling(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a ``size`` x ``size`` matrix product in ``dtype`` on this process's threads, the best of ``repeats``:
    what the cores do at best, the ceiling the benchmarks hold a layer or a step against."""
    a = torch.randn(size, size).to(dtype)
    a @ a
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        a @ a
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def resolve_precision(precision: str | int, accelerator: str) -> tuple[str | int, str]:
    """``trainer.precision`` for Lightning and why: ``auto`` is bf16 autocast (``bf16-mixed``; the loss terms stay
    float32) where the hardware runs bf16 natively, else ``32-true``; any other value is kept."""
    if precision != "auto":
        return precision, "as set"
    reason = native_bf16(accelerator)
    return ("bf16-mixed", f"auto: {reason}") if reason else ("32-true", "auto: no native bf16 here")


def native_bf16(accelerator: str) -> str | None:
    """What runs bf16 natively for ``trainer.accelerator`` ("a CPU with AMX", "NVIDIA H100 ..."), or None: on a CPU
    without AMX or AVX-512 bf16, bf16 is emulated and slower than float32."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return f"{torch.cuda.get_device_name()} has bf16"
        return None
    if accelerator not in ("cpu", "auto"):
        return None
    isa_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()  # oneDNN's kernels capped below bf16 by the user
    if isa_cap != "ALL" and "AMX" not in isa_cap and "BF16" not in isa_cap:
        return None
    features = set(cpu_features())
    if "amx_bf16" in features:
        return "the CPU has AMX"
    return "the CPU has AVX-512 bf16" if "avx512_bf16" in features else None


ONEDNN_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
    """The instruction-set extensions among ``ONEDNN_FEATURES`` that /proc/cpuinfo lists ([] elsewhere)."""
    present = set(cpuinfo("flags").split())
    return [feature for feature in ONEDNN_FEATURES if feature in present]


def cpuinfo(field: str) -> str:
    """The first CPU's ``field`` in /proc/cpuinfo ("" where there is none: not Linux, or no such field)."""
    try:
        line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(field))
    except (OSError, StopIteration):
        return ""
    return line.split(":", 1)[1].strip()
