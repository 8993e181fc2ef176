"""``evaluate(cfg, job)``: the test-split report of one checkpoint, or a comparison of several runs.

One checkpoint (``ckpt_path=``): ``scoring`` writes its ``metrics.json`` (recon, KL, loss per image and the IWAE
figure), figures and the Projector's latent codes. Several (``runs=[...]``: run folders, checkpoints or multirun
folders): the same for each, and ``comparison`` writes ``results.{csv,md}`` and ``comparison.png``, where runs that
differ only by seed (``vaelab.sweep.replicas``) make one row: the metrics' means, ``seeds`` and the spreads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar
from omegaconf import DictConfig

from vaelab.builders import build_trainer
from vaelab.checks import check_eval_settings
from vaelab.data import IDXDataModule
from vaelab.data.datamodule import check_labels
from vaelab.errors import Interrupted, VaelabError
from vaelab.evaluation.comparison import write_comparison
from vaelab.evaluation.scoring import evaluate_checkpoint
from vaelab.figures.settings import FigureSettings
from vaelab.job import Job
from vaelab.process import tune_malloc
from vaelab.run import guard as run_guard
from vaelab.run.checkpoints import model_class, read_checkpoint
from vaelab.run.folder import RunFolder, RunStatus, sweep_jobs
from vaelab.targets import instantiate, trusting


def evaluate(cfg: DictConfig, job: Job | None = None) -> list[dict[str, Any]]:
    """Evaluate ``cfg.ckpt_path`` or every run in ``cfg.runs`` on the test split; returns one metrics dict each.
    ``job``: the Hydra job it runs as (the command passes its own; None: a plain run with no overrides).
    An evaluation that fails before its first test result leaves no folder of its own behind (``vaelab.run.guard``);
    from then on what it computed stays, marked partial until it is complete (``evaluate_checkpoint``)."""
    job = job or Job()
    output_dir = Path(cfg.paths.output_dir)
    with (
        trusting(cfg),
        run_guard.writing(output_dir, False, command=job.command) as keep_folder,
        ctrl_c_is_interrupted(),
    ):
        tune_malloc()
        check_eval_settings(cfg, job)
        figure_settings = FigureSettings.from_config(cfg.figures, "figures")
        sources, left_out = checkpoint_sources(cfg.get("ckpt_path"), cfg.get("runs"))
        # Every file read, and its model class trusted, before anything is built: a bad one is one line.
        checkpoints = [read_checkpoint(path, trusted=cfg.get("trusted_models") or ()) for path in sources]
        # Scored on the pixels they were trained on: one convention for all of them.
        convention = pixel_convention(sources, checkpoints, cfg.data.get("binarize", "none"))
        datamodule: IDXDataModule = instantiate(cfg.data, **convention)
        for path, checkpoint in zip(sources, checkpoints):  # a conditional model needs the labels it was trained on
            num_classes = model_class(checkpoint["vaelab_model_class"]).num_classes
            check_labels(num_classes, datamodule, str(path))
            figure_settings.check("figures", num_classes)
        # tqdm, as in training and the IWAE and figure bars (Lightning would pick Rich's where it is installed).
        bar = [TQDMProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else []
        trainer = build_trainer(cfg.trainer, logger=False, callbacks=bar)

        names = [run_names(path) for path in sources]
        labels = unique_labels([label for _, label in names], sources)
        results = []
        for checkpoint_path, checkpoint, (setting, _), label in zip(sources, checkpoints, names, labels):
            run_output = output_dir if len(sources) == 1 and not cfg.get("runs") else output_dir / label
            results.append(evaluate_checkpoint(cfg, checkpoint_path, checkpoint, datamodule, trainer, run_output,
                                               setting, label, keep_folder))  # fmt: skip
        if cfg.get("runs"):
            write_comparison(results, sources, output_dir, cfg.get("report_dir"), left_out)
        return results


def pixel_convention(sources: list[Path], checkpoints: list[dict[str, Any]], asked: str) -> dict[str, Any]:
    """The pixels the checkpoints were trained on (``data.binarize`` and its seed, as each checkpoint keeps them), and
    the likelihood they were scored with, which must be one for all: numbers of different conventions do not
    compare. ``asked``: eval's ``data.binarize``; other than ``none``, it must be the checkpoints' own."""
    conventions = {}
    for path, checkpoint in zip(sources, checkpoints):
        pixels = IDXDataModule.recorded_pixels(checkpoint.get(IDXDataModule.__qualname__))
        likelihood = (checkpoint.get("hyper_parameters") or {}).get("likelihood", "bernoulli")
        conventions[path] = (pixels["binarize"], pixels["binarize_seed"], likelihood)
    found = sorted(set(conventions.values()), key=str)
    if len(found) > 1:
        named = "; ".join(f"{path}: data.binarize={b} data.binarize_seed={s} model.likelihood={likelihood}"
                          for path, (b, s, likelihood) in conventions.items())  # fmt: skip
        raise VaelabError(f"these runs' numbers do not compare (other pixels or likelihoods): {named}; "
                          "compare runs of one convention at a time")  # fmt: skip
    binarize, seed, _ = found[0] if found else ("none", 0, "bernoulli")
    if asked not in ("none", binarize):
        raise VaelabError(f"data.binarize={asked}: the checkpoint was trained with data.binarize={binarize}, and is "
                          "scored on those pixels (leave data.binarize out)")  # fmt: skip
    return {"binarize": binarize, "binarize_seed": seed}


@contextmanager
def ctrl_c_is_interrupted() -> Iterator[None]:
    """A Ctrl-C that no phase turned into its own message is ``Interrupted``: one line, not a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("stopped by Ctrl-C") from None


def checkpoint_sources(ckpt_path: str | None, runs: Any) -> tuple[list[Path], list[str]]:
    """The checkpoints to evaluate, and a line for each run left out. ``ckpt_path``, or for each entry of ``runs`` a
    checkpoint file, a run folder (``RunFolder.best_checkpoint``) or a multirun folder (each of its job
    folders). A run counts once however often it is named, and only a completed one: an interrupted, failed, pruned
    or unfinished run is left out (a checkpoint file named on its own is taken as it is)."""
    if bool(ckpt_path) == bool(runs):
        raise VaelabError("pass exactly one of ckpt_path=<file.ckpt> or runs='[<run folder>, ...]'.")
    if ckpt_path:
        return [Path(ckpt_path)], []
    entries = [runs] if isinstance(runs, str) else list(runs)
    found: dict[Path, Path] = {}  # resolved -> as named
    left_out: list[str] = []
    for entry in map(Path, entries):
        if entry.is_file():
            found.setdefault(entry.resolve(), entry)
            continue
        if RunFolder(entry).holds_run():
            folders = [entry]
        elif entry.is_dir() and (jobs := sweep_jobs(entry)):
            folders = jobs
        else:
            raise VaelabError(f"{entry} is neither a checkpoint, a run folder nor a multirun folder.")
        for folder in map(RunFolder, folders):
            status, error = folder.status()
            if status != RunStatus.COMPLETED:
                left_out.append(f"{folder.path}: {status}" + (f" ({error})" if error else ""))
            else:  # named twice (A, A/, a sweep and one of its jobs): one file, counted once
                checkpoint = folder.best_checkpoint()
                found.setdefault(checkpoint.resolve(), checkpoint)
    if not found:
        raise VaelabError(f"no completed run to evaluate in runs={list(entries)}: left out {'; '.join(left_out)}")
    return list(found.values()), left_out


def unique_labels(labels: list[str], sources: list[Path]) -> list[str]:
    """``labels`` made unique (each names an output folder): runs whose folders share a name (``sweep1/0`` and
    ``sweep2/0``) add their parent folder's name, and a number where even that is shared."""
    parents = [source.resolve().parents[2].name if RunFolder.of_checkpoint(source) else "" for source in sources]
    labels = [
        f"{label}-{parent}" if labels.count(label) > 1 and parent else label for label, parent in zip(labels, parents)
    ]
    return [label if labels.count(label) == 1 else f"{label}-{index + 1}" for index, label in enumerate(labels)]


def run_names(checkpoint_path: Path) -> tuple[str, str]:
    """``(setting, label)`` of the run a checkpoint comes from: what it trained, in short (its experiment and model
    choices, ``tuned conv_vae``), and that plus the run folder's name; the file's stem for a loose checkpoint."""
    folder = RunFolder.of_checkpoint(checkpoint_path)
    if folder is None:
        return checkpoint_path.stem, checkpoint_path.stem
    choices = folder.config_choices()
    setting = " ".join(name for name in (choices.get("experiment"), choices.get("model")) if name) or "run"
    return setting, f"{setting}-{folder.path.name}"
