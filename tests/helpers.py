"""Helpers the tests share: tiny MNIST-format IDX files, composed configs, scripts run in or out of process,
small batches and plain training steps, servers' free ports and JSON. Fixtures live in conftest.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.hydra_compat import version_base

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
TINY_TRAIN, TINY_TEST = 600, 200


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format MNIST uses (magic 0x08 = unsigned byte, big-endian dims)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose content depends on the label: a bright 8x8 block at a label-dependent place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    images = (rng.random((count, 28, 28)) * 40).astype(np.uint8)
    for image, label in zip(images, labels):
        row, col = 2 + (label // 5) * 14, 2 + (label % 5) * 5
        image[row : row + 10, col : col + 6] = 230
    return images, labels


def write_mnist(
    root: Path, train: int = TINY_TRAIN, test: int = TINY_TEST, name: str = "MNIST", labels: bool = True
) -> Path:
    """A folder ``root`` with ``<name>/raw/*-ubyte`` (MNIST's file names, as torchvision expects; no labels files
    unless ``labels``); returns ``root``."""
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", train, 0), ("t10k", test, 1)):
        images, digits = synthetic_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        if labels:
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", digits)
    return root


# The models, in the job order of the `trained_sweep` fixture.
SWEPT_MODELS = ("vae", "conv_vae", "cond_conv_vae")
# A learning-rate schedule whose curve is easy to check: 1e-3, then 5e-4.
STEP_LR = "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"


# Runs that check something other than the figures skip drawing them (about 1.5 s per epoch).
NO_FIGURES = ["callbacks.figures=null"]  # not ~callbacks.figures: Hydra 1.4.0rc3 fails a multirun with a deletion


def compose_config(config_name: str, overrides: list[str], output_dir: Path | None = None):
    """The composed config of ``train``/``eval`` with these overrides, as ``train.py``/``evaluate.py`` build it;
    with ``output_dir``, writing there, and every interpolation resolved (so a broken one fails here)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), **version_base()):
        if output_dir is None:
            return compose(config_name=config_name, overrides=overrides)
        cfg = compose(config_name=config_name, overrides=[f"paths.output_dir={output_dir}", *overrides])
    OmegaConf.resolve(cfg)
    return cfg


def tiny_data_overrides(data_dir: Path) -> list[str]:
    """Hydra overrides that point a run at the tiny data set, offline."""
    return [f"data.data_dir={data_dir}", "data.download=false", "data.val_size=100"]


def run_script(script: str, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``train.py``/``evaluate.py`` as a user would, from the project root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / script), *overrides],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def run_inline(script: str, *overrides: str) -> subprocess.CompletedProcess:
    """Run ``train.py``/``evaluate.py`` inside this process, as ``python <script> <overrides>`` would (same
    ``__main__``, Hydra's command-line handling, exit status and output), without the ~10 s of starting Python
    and importing torch and Lightning again. For what only the command line does (Hydra's parsing and callbacks,
    ``resume=``'s overrides, one-line errors) and a sweep's parent process; tests of what a run computes call
    ``train(cfg)``/``evaluate(cfg)`` instead. vaelab puts back the signal handlers it sets while a run fits;
    what is put back here is Hydra's: argv, the environment, its logging set-up and its singletons."""
    import contextlib
    import io
    import logging
    import runpy

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved_argv, saved_environ = sys.argv, dict(os.environ)
    loggers = [logging.getLogger(), logging.getLogger("lightning")]
    saved_logging = [(logger.handlers[:], logger.level) for logger in loggers]
    stdout, stderr, returncode = io.StringIO(), io.StringIO(), 0
    sys.argv = [str(PROJECT_ROOT / script), *overrides]
    os.environ.pop("HYDRA_FULL_ERROR", None)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(str(PROJECT_ROOT / script), run_name="__main__")
    except SystemExit as exit_:
        returncode = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_environ)
        for logger, (handlers, level) in zip(loggers, saved_logging):
            for handler in logger.handlers[:]:
                if handler not in handlers:
                    logger.removeHandler(handler)
                    handler.close()
            logger.handlers[:] = handlers
            logger.setLevel(level)
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    return subprocess.CompletedProcess(sys.argv, returncode, stdout.getvalue(), stderr.getvalue())


def tensorboard_run(run_dir: Path) -> Path:
    """The one TensorBoard run folder of a run, ``<run_dir>/tensorboard/<run name>``."""
    (found,) = {path.parent for path in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    return found


def free_port() -> int:
    """A port nothing listens on, on 127.0.0.1 (for a server a test starts and stops)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, timeout: float, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` as JSON to) ``url``, retrying until the server answers or ``timeout`` passes."""
    deadline = time.time() + timeout
    data = json.dumps(body).encode() if body is not None else None
    while True:
        try:
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def small_batch(size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with a label-dependent bright block (learnable in a few steps) and their labels."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (size,), generator=generator)
    images = torch.rand(size, 1, 28, 28, generator=generator) * 0.2
    for image, label in zip(images, labels):
        image[0, 4 + 2 * label : 10 + 2 * label, 6:20] = 0.9
    return images, labels


def train_steps(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Plain optimizer steps on one batch (the model's own optimizer), no Lightning; yields each step's loss terms."""
    optimizer = model.configure_optimizers()
    for _ in range(steps):
        terms = model.loss_terms(images, labels)
        optimizer.zero_grad()
        terms["loss"].mean().backward()
        optimizer.step()
        yield terms


def start_long_run(tiny_mnist: Path, run_dir: Path) -> subprocess.Popen:
    """A dense-VAE run of 1000 short epochs, returned once it is past its first epoch."""
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), "model=vae", "trainer.limit_val_batches=1",
               "callbacks.figures.grid_size=4", "test=false", "data.batch_size=10", "trainer.max_epochs=1000",
               *tiny_data_overrides(tiny_mnist), f"hydra.run.dir={run_dir}"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C as in a terminal, whatever pytest ignores
    )  # fmt: skip
    deadline = time.time() + 120
    while not list((run_dir / "checkpoints").glob("best*.ckpt")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)  # into a later epoch
    return process


class StopAt:
    """A callback that raises KeyboardInterrupt (what Ctrl-C raises; with ``sigterm``, what Lightning raises once a
    SIGTERM arrived) in ``hook`` at ``epoch`` (None: any)/``batch`` (of the sanity check with ``sanity``; in the run
    folder named ``only_in``; only while the file ``once`` does not exist, which it then creates): an interrupt
    landing at an exact point of a run, for ``+callbacks.stop={_target_:helpers.StopAt,...}``."""

    def __new__(
        cls, hook: str, epoch: int | None, batch: int, sigterm: bool = False, sanity: bool = False,
        only_in: str | None = None, once: str | None = None,
    ):  # fmt: skip
        import lightning.pytorch as pl
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        def stop(self, trainer, module, outputs_or_batch, batch_or_index, *rest) -> None:
            index = rest[0] if hook.endswith("_end") else batch_or_index
            if epoch not in (None, trainer.current_epoch) or index != batch or trainer.sanity_checking != sanity:
                return
            if only_in is not None and Path(trainer.default_root_dir).name != only_in:
                return
            if once is not None:  # the first time only: a sweep run again to finish it goes through
                if Path(once).exists():
                    return
                Path(once).touch()
            raise SIGTERMException if sigterm else KeyboardInterrupt

        return type("StopAtHook", (pl.Callback,), {hook: stop})()


class InterruptWhenBuilt:
    """A callback whose construction raises KeyboardInterrupt: Ctrl-C while a run or sweep job is being set up
    (before Lightning handles it), the first time only while the file ``once`` does not exist; for
    ``+callbacks.stop={_target_:helpers.InterruptWhenBuilt,once:...}``."""

    def __new__(cls, once: str):
        import lightning.pytorch as pl

        if not Path(once).exists():
            Path(once).touch()
            raise KeyboardInterrupt
        return pl.Callback()


class Clock:
    """A callback that writes the monotonic time at the start of training and of testing, one per line, to
    ``path``: for ``+callbacks.clock={_target_:helpers.Clock,path:...}``."""

    def __new__(cls, path: str):
        import lightning.pytorch as pl

        def mark(self, trainer, module) -> None:
            with open(path, "a") as marks:
                marks.write(f"{time.monotonic()}\n")

        return type("ClockHook", (pl.Callback,), {"on_train_start": mark, "on_test_start": mark})()


def val_loss_over_ranks(checkpoint: Path, data_dir: Path, val_size: int, world_size: int) -> float:
    """The val/loss a DDP run of ``world_size`` processes logs for ``checkpoint``: each process takes every
    ``world_size``-th validation image (each counted once) with its own evaluation noise; the mean over all."""
    from vaelab.data import IDXDataModule
    from vaelab.models.resume_state import EVAL_NOISE_SEED
    from vaelab.run.checkpoints import load_model

    model = load_model(checkpoint)
    datamodule = IDXDataModule(data_dir=str(data_dir), download=False, val_size=val_size)
    datamodule.prepare_data()
    datamodule.setup("fit")
    images, labels = datamodule.val_set.images, datamodule.val_set.labels
    with torch.no_grad():
        losses = [
            model.loss_terms(images[rank::world_size], labels[rank::world_size],
                             torch.Generator().manual_seed(EVAL_NOISE_SEED))["loss"]
            for rank in range(world_size)
        ]  # fmt: skip
    return torch.cat(losses).mean().item()


class Rewrite:
    """A callback that replaces ``old`` with ``new`` in the file ``path`` when training starts: a config edited
    while a sweep runs, for ``+callbacks.rewrite={_target_:helpers.Rewrite,...}``."""

    def __new__(cls, path: str, old: str, new: str):
        import lightning.pytorch as pl

        def rewrite(self, trainer, module) -> None:
            Path(path).write_text(Path(path).read_text().replace(old, new))

        return type("RewriteHook", (pl.Callback,), {"on_train_start": rewrite})()


def wandb_records(run_dir: Path) -> list[Any]:
    """The records of a run's offline W&B transaction log (``<run>/wandb/offline-run-*/run-*.wandb``, LevelDB's log
    format: 32 KiB blocks of checksum, length, type and payload), parsed as W&B's ``Record`` protos."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, offset, pending, parsed = path.read_bytes(), 7, b"", []  # after the ":W&B" header
    while offset + 7 <= len(data):
        left = 32768 - offset % 32768
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):  # a block's padding
            offset += left
            continue
        payload, offset = data[offset + 7 : offset + 7 + length], offset + 7 + length
        pending = payload if kind in (1, 2) else pending + payload  # full, first; middle, last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            parsed.append(record)
    return parsed
