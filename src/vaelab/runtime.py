"""Process-wide settings that make CPU training fast."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024

_tuned = False
JOB_THREADS_ENV = "VAELAB_JOB_THREADS"


def tune_malloc() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS each step.

    glibc serves each multi-MB activation/gradient buffer of a training step with a fresh ``mmap`` and
    unmaps it when freed, so every step page-faults its memory in again: for the conv VAE on 2 cores
    that was ~18 % of CPU time in the kernel and 1,450 instead of 2,230 images/s (docs/performance.md).
    Raising the mmap and trim thresholds keeps that memory mapped. Returns True if applied (Linux with
    glibc); elsewhere it does nothing.
    """
    global _tuned
    if _tuned:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not _tuned:
        log.debug("mallopt refused the thresholds; allocator left as it is")
    return _tuned


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; a SLURM or container limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def job_threads(launcher: dict | None, cores: int) -> int | None:
    """Intra-op threads for a job run by ``launcher`` (Hydra's launcher config), or None to keep torch's default.

    Jobs that run at once must split the cores: OpenMP threads spin, so two 2-thread processes on 2 cores
    run ~5x slower each (docs/performance.md). joblib runs ``n_jobs`` jobs at once (-1: one per core);
    submitit gives each job ``cpus_per_task`` cores (a SLURM allocation, or a share on this machine).
    """
    target = str((launcher or {}).get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = int(launcher.get("n_jobs") or 1)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores, -2 = all but one
        return max(1, cores // parallel)
    if "submitit" in target.lower() and launcher.get("cpus_per_task"):
        return max(1, min(cores, int(launcher["cpus_per_task"])))
    return None


def set_job_threads() -> int:
    """Apply ``job_threads`` to the running Hydra job; returns the thread count in use.

    The count is exported as ``VAELAB_JOB_THREADS`` for the DDP processes Lightning starts from this job.
    """
    from hydra.core.hydra_config import HydraConfig

    threads = None
    if HydraConfig.initialized():
        launcher = HydraConfig.get().get("launcher")
        threads = job_threads(dict(launcher) if launcher is not None else None, available_cores())
    if threads is None and os.environ.get(JOB_THREADS_ENV):
        threads = int(os.environ[JOB_THREADS_ENV])
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ[JOB_THREADS_ENV] = str(threads)
    return torch.get_num_threads()


def describe_device(device: torch.device) -> str:
    """A short name of the machine a run used, for reports: the GPU's name, or the CPU's and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model_name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {model_name}, {threads} thread{'s' if threads > 1 else ''}"


def machine_facts(device: torch.device) -> dict[str, str | int]:
    """What makes a run's numbers specific to its machine, for ``metrics.json``: the device, the torch build,
    the CPU instruction set oneDNN's kernels use (their rounding differs between AVX2 and AVX-512, so a
    seeded run ends elsewhere on another kind of CPU: docs/results.md) and the intra-op threads."""
    facts: dict[str, str | int] = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # oneDNN picks its kernels by finer features than the capability: two AVX512 machines can differ here.
        "cpu_features": " ".join(cpu_features()),
        "threads": torch.get_num_threads(),
    }
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):  # a cap the user set on oneDNN's instruction set
        facts["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if device.type == "cuda":
        facts["cuda"] = str(torch.version.cuda)
    return facts


ONEDNN_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
    """The instruction-set extensions among ``ONEDNN_FEATURES`` that /proc/cpuinfo lists ([] elsewhere)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    present = set(flags.split(":", 1)[1].split())
    return [feature for feature in ONEDNN_FEATURES if feature in present]


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Lightning's messages once, in Hydra's console and log file: ``import lightning`` gives its logger a
    stderr handler of its own (every line twice under Hydra, and noise before a one-line error), and the
    Trainer advertises cloud services at every start."""
    import lightning  # noqa: F401  (adds the handler this removes)

    if logging.getLogger().hasHandlers():
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_tip)
