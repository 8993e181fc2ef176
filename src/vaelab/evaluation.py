"""``evaluate(cfg)``: the test-split report of one checkpoint, or a comparison of several runs.

One checkpoint (``ckpt_path=``): ``metrics.json`` (recon, KL, loss per image and the IWAE estimate of the test
log-likelihood), figures and the Projector's latent codes. Several (``runs=[...]``: run folders, checkpoints or
multirun folders): the same for each, plus ``results.{csv,md}`` and ``comparison.png``, where runs that differ only
by seed (``vaelab.replicas``) make one row: the metrics' means, ``seeds`` and the loss's spread.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from vaelab.building import instantiate
from vaelab.checks import check_eval_settings
from vaelab.data import IDXDataModule
from vaelab.data.datamodule import check_labels
from vaelab.errors import Interrupted, VaelabError
from vaelab.figures import plots
from vaelab.figures.model import draw_figures
from vaelab.figures.projector import write_projector
from vaelab.figures.settings import FIGURES, FigureSettings
from vaelab.job import Job
from vaelab.loggers.mlflow import log_evaluation
from vaelab.machine import machine_facts
from vaelab.models.base import ELBOModule
from vaelab.models.inference import encode_means
from vaelab.models.metric_names import IWAE_KEYS, iwae_key
from vaelab.models.probability import iwae_log_likelihood
from vaelab.process import tune_malloc
from vaelab.replicas import group_replicas, setting_of, spread, without_seeds
from vaelab.run import guard as run_guard
from vaelab.run.checkpoints import model_class, model_from_checkpoint, read_checkpoint
from vaelab.run.folder import RunFolder, RunStatus, sweep_jobs
from vaelab.tables import markdown_table, write_csv
from vaelab.training import build_trainer
from vaelab.validators import make_folder

# The results table's columns; "iwae" stands for the IWAE figure's name (metric_names.iwae_key: one per comparison,
# whose runs share one convention).
RESULT_COLUMNS = (
    "setting", "model", "run", "split", "binarize", "likelihood", "latent_dim", "epochs", "recon", "kl", "loss",
    "loss_kl_averaged", "iwae", "seeds", "loss_std", "loss_ci95", "iwae_std", "iwae_ci95", "loss_best",
    "seconds_per_epoch", "device",
)  # fmt: skip
# The numbers an evaluation scores a checkpoint with (TensorBoard test/*, MLflow eval/*), its IWAE figure besides.
SCORES = ("recon", "kl", "loss", "loss_kl_averaged")
# Averaged over the replicas of a setting in its results row.
MEAN_COLUMNS = ("recon", "kl", "loss", "loss_kl_averaged", *IWAE_KEYS, "seconds_per_epoch")


def evaluate(cfg: DictConfig, job: Job | None = None) -> list[dict[str, Any]]:
    """Evaluate ``cfg.ckpt_path`` or every run in ``cfg.runs`` on the test split; returns one metrics dict each.
    ``job``: the Hydra job it runs as (the command passes its own; None: a plain run with no overrides).
    An evaluation that fails before its first test result leaves no folder of its own behind (``vaelab.run.guard``);
    from then on what it computed stays, marked partial until it is complete (``evaluate_checkpoint``)."""
    job = job or Job()
    output_dir = Path(cfg.paths.output_dir)
    with run_guard.writing(output_dir, False, command=job.command) as keep_folder, ctrl_c_is_interrupted():
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
        data = checkpoint.get(IDXDataModule.__qualname__) or {}
        likelihood = (checkpoint.get("hyper_parameters") or {}).get("likelihood", "bernoulli")
        conventions[path] = (data.get("binarize", "none"), data.get("binarize_seed", 0), likelihood)
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


def evaluate_checkpoint(
    cfg: DictConfig,
    checkpoint_path: Path,
    checkpoint: dict[str, Any],
    datamodule: IDXDataModule,
    trainer: pl.Trainer,
    output_dir: Path,
    setting: str,
    label: str,
    keep_folder: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Test metrics, IWAE estimate, figures and projector embedding of one checkpoint (``run_names`` says
    ``setting`` and ``label``). ``metrics.json`` is written after the test and again after each phase, marked
    ``"evaluation": "partial"`` (then ``"complete"``) with the ``phases`` done; from the first write on, the folder is
    kept (``keep_folder``), and a Ctrl-C marks it ``"interrupted"`` and raises ``Interrupted``."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the ELBO and IWAE are Monte-Carlo estimates
    model = model_from_checkpoint(checkpoint, checkpoint_path)  # after the seed, as the published figures had it
    try:
        (test,) = trainer.test(model, datamodule=datamodule, verbose=False)
    except SystemExit:  # Lightning's exit after Ctrl-C
        if not trainer.interrupted:
            raise
        raise Interrupted(f"stopped by Ctrl-C during the test of {checkpoint_path}; nothing of it was kept") from None
    model = model.to(trainer.strategy.root_device).eval()
    # Every number of the report on the images the test saw (trainer.limit_test_batches may take the first few).
    tested = min(len(datamodule.test_set.labels), int(trainer.num_test_batches[0]) * datamodule.eval_batch_size)
    # On the CPU (the set may live on the GPU, data.device): the estimate moves its chunks to the model.
    images, labels = datamodule.test_set.images[:tested].cpu(), datamodule.test_set.labels[:tested].cpu()
    folder = RunFolder.of_checkpoint(checkpoint_path)
    training = folder.read_metrics() if folder else {}
    iwae = iwae_key(datamodule.binarize, model.likelihood)
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint_path.resolve()),
        "model": model.model_name,
        "run": label,
        "setting": setting,
        "split": "test",
        "binarize": datamodule.binarize,
        "binarize_seed": datamodule.binarize_seed,
        "likelihood": model.likelihood,
        "images": len(labels),
        "latent_dim": model.latent_dim,
        "epochs": checkpoint.get("epoch", -1) + 1,
        "seed": cfg.get("seed"),
        "recon": test["test/recon"],
        "kl": test["test/kl"],
        "loss": test["test/loss"],
        # The reference study's convention (README, "Loss conventions"): KL averaged over the latent dims, not summed.
        "loss_kl_averaged": test["test/recon"] + test["test/kl"] / model.latent_dim,
        "iwae_samples": cfg.iwae_samples,
        iwae: float("nan"),
        "seconds_per_epoch": training.get("seconds_per_epoch", float("nan")),
        "device": training.get("device", ""),
        # Where these numbers were computed (the training run's own facts are in its metrics.json).
        "evaluated_on": machine_facts(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "evaluation": "partial",
        "phases": ["test"],
    }
    metrics["device"] = metrics["device"] or metrics["evaluated_on"]["device"]
    record = RunFolder(output_dir)
    make_folder(output_dir, "hydra.run.dir")
    record.write_metrics(metrics)
    keep_folder()
    phase = "the IWAE estimate"
    try:
        if cfg.iwae_samples is not None:
            # In float32 whatever trainer.precision: bf16 moved the estimate by 5 seed deviations (docs/performance.md).
            with progress_bar(f"IWAE, K={cfg.iwae_samples}", len(labels), "img") as bar:
                log_likelihood = iwae_log_likelihood(model, images, labels if model.num_classes else None,
                                                     cfg.iwae_samples, progress=bar.update)  # fmt: skip
            metrics[iwae] = -log_likelihood.mean().item()
            finish_phase(record, metrics, "iwae")
        phase = "the figures"
        drawn = save_figures(model, images, labels, output_dir / "figures", cfg.figures, datamodule.class_names)
        # TensorBoard names the run after this folder: "eval <model> <training run> epoch N".
        log_dir = output_dir / "tensorboard" / f"eval {label} epoch {metrics['epochs']}"
        write_tensorboard(metrics, drawn, int(checkpoint.get("global_step", 0)), log_dir)
        finish_phase(record, metrics, "figures")
        if folder is not None:  # the training run's MLflow run, if it had one; the files above stand without it
            log_to_training_run(folder, metrics, int(checkpoint.get("global_step", 0)), label)
        phase = "the projector's codes"
        if cfg.projector:  # the whole test split, with its digits and thumbnails
            codes = encode_means(model, images, labels)
            write_projector(log_dir, codes, labels, images, class_names=datamodule.class_names)
            finish_phase(record, metrics, "projector")
    except KeyboardInterrupt:
        metrics["evaluation"] = "interrupted"
        record.write_metrics(metrics)
        done = ", ".join(metrics["phases"])
        raise Interrupted(
            f"stopped by Ctrl-C during {phase}; {record.metrics_file} keeps what was done ({done}), marked interrupted"
        ) from None
    metrics["evaluation"] = "complete"
    record.write_metrics(metrics)
    print(
        f"{label}: test per image: recon={metrics['recon']:.2f} kl={metrics['kl']:.2f} "
        f"loss={metrics['loss']:.2f} (KL averaged {metrics['loss_kl_averaged']:.2f}) "
        f"{iwae}(K={cfg.iwae_samples})={metrics[iwae]:.2f}\n  -> {output_dir}",
        flush=True,
    )
    return metrics


def finish_phase(record: RunFolder, metrics: dict[str, Any], phase: str) -> None:
    """``phase`` done: named in ``metrics["phases"]`` and ``metrics.json`` written again."""
    metrics["phases"].append(phase)
    record.write_metrics(metrics)


def progress_bar(description: str, total: int, unit: str) -> tqdm:
    """A bar with the rate and the time left, on stderr (as Lightning's bars)."""
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def log_to_training_run(folder: RunFolder, metrics: dict[str, Any], step: int, label: str) -> None:
    """The scores as ``eval/*`` in the training run's MLflow run, if it had one; one line on stderr when that run
    cannot be reached (its server down, its store gone, MLflow not installed)."""
    try:
        if log_evaluation(folder.path, scores(metrics), step):
            print(f"{label}: logged as eval/* to the training run's MLflow run", flush=True)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        print(f"{label}: not logged to the training run's MLflow run ({reason})", file=sys.stderr, flush=True)


def save_figures(
    model: ELBOModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    figure_dir: Path,
    settings: Any,
    class_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Every standard figure (``vaelab.figures.model.FIGURES``) on the test split, saved as PNGs as it is drawn, with
    a progress bar; returns each one's pixels by name. ``settings`` is eval.yaml's ``figures``
    (``FigureSettings``' fields)."""
    pixels: dict[str, np.ndarray] = {}
    with progress_bar("figures", len(FIGURES), "figure") as bar:

        def save(figures: dict[str, Any]) -> None:
            pixels.update(
                {name: plots.save_png(figure, figure_dir / f"{name}.png") for name, figure in figures.items()}
            )
            bar.update()

        draw_figures(model, images, labels, FIGURES,
                     FigureSettings.from_config(settings, "figures", class_names=class_names), each=save)  # fmt: skip
    return pixels


def write_tensorboard(metrics: dict[str, Any], drawn: dict[str, np.ndarray], step: int, log_dir: Path) -> None:
    """The evaluation's numbers as ``test/*`` scalars and its figures as ``figures/*`` images, at the checkpoint's
    training step: beside the training run's own curves when TensorBoard shows both folders."""
    with SummaryWriter(str(log_dir)) as writer:
        for name, value in scores(metrics).items():
            writer.add_scalar(f"test/{name}", value, global_step=step)
        for name, pixels in drawn.items():
            writer.add_image(f"figures/{name}", pixels, global_step=step, dataformats="HWC")


def scores(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite scores of an evaluation (``SCORES`` and its IWAE figure, under its own name)."""
    names = [*SCORES, *(key for key in IWAE_KEYS if key in metrics)]
    return {name: metrics[name] for name in names if math.isfinite(metrics[name])}


def figure_labels(results: list[dict[str, Any]], sources: list[Path]) -> list[str]:
    """Short names for the comparison figure: each run's setting (``capacity conv_vae``), with the overrides that set
    apart runs sharing one (seeds left out), or the run label where even those are the same."""
    settings = [result["setting"] for result in results]
    overrides = [
        set(without_seeds(folder.overrides())) if (folder := RunFolder.of_checkpoint(s)) else set() for s in sources
    ]
    labels = []
    for index, setting in enumerate(settings):
        twins = [i for i, other in enumerate(settings) if other == setting]
        shared = set.intersection(*(overrides[i] for i in twins))
        labels.append(" ".join([setting, *sorted(overrides[index] - shared)]))
    return [label if labels.count(label) == 1 else result["run"] for label, result in zip(labels, results)]


def replica_groups(sources: list[Path]) -> list[list[int]]:
    """Indices of ``sources`` grouped by setting: runs that differ only by seed share a group; a checkpoint
    outside a run folder is a group of its own."""
    folders = [RunFolder.of_checkpoint(source) for source in sources]
    return group_replicas(
        range(len(sources)), key=lambda i: setting_of(folders[i]) if folders[i] else f"checkpoint {sources[i]}"
    )


def setting_row(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The results row of one setting: its runs' mean metrics, ``seeds`` runs, the loss's spread."""
    first, loss = members[0], spread(member["loss"] for member in members)
    iwae_name = next(key for key in IWAE_KEYS if key in first)
    iwae = spread(member[iwae_name] for member in members)
    row = {column: first[column] for column in RESULT_COLUMNS if column in first}
    row.update({column: spread(member[column] for member in members).mean for column in MEAN_COLUMNS
                if column in first})  # fmt: skip
    epochs = sorted({member["epochs"] for member in members})
    row.update(
        run=" ".join(member["run"] for member in members),
        epochs=epochs[0] if len(epochs) == 1 else " ".join(map(str, epochs)),
        seeds=len(members), loss_std=loss.std, loss_ci95=loss.ci95, loss_best=loss.best,
        **{f"{iwae_name}_std": iwae.std, f"{iwae_name}_ci95": iwae.ci95},
        device="; ".join(sorted({str(member["device"]) for member in members})),
    )  # fmt: skip
    return row


def validation_band(folders: list[RunFolder | None]) -> tuple[list[int], list[float], list[float]] | None:
    """Mean and standard deviation of ``val/loss`` per epoch over replicas (epochs every run reached)."""
    curves = [dict(folder.validation_losses()) for folder in folders if folder]
    curves = [curve for curve in curves if curve]
    if not curves:
        return None
    epochs = sorted(set.intersection(*(set(curve) for curve in curves)))
    spreads = [spread(curve[epoch] for curve in curves) for epoch in epochs]
    return epochs, [s.mean for s in spreads], [s.std if s.n > 1 else 0.0 for s in spreads]


def write_comparison(
    results: list[dict[str, Any]], sources: list[Path], output_dir: Path, report_dir: str | None, left_out: list[str]
) -> None:
    """``results.csv`` and ``results_table.md`` (one row per setting, replicas averaged; the runs left out named
    below it) and ``comparison.png``; copies into ``report_dir``."""
    groups = replica_groups(sources)
    # Each setting named by what sets it apart (``conv_vae model.optimizer.lr=0.001``), in the tables as in the figure.
    names = figure_labels([results[group[0]] for group in groups], [sources[group[0]] for group in groups])
    rows = [{**setting_row([results[i] for i in group]), "setting": name} for name, group in zip(names, groups)]
    iwae_name = next(key for key in IWAE_KEYS if key in results[0])  # one convention (pixel_convention)
    columns = [column.replace("iwae", iwae_name) for column in RESULT_COLUMNS]
    table = markdown_table(rows, columns)
    if left_out:
        table += "\nLeft out (only completed runs count):\n\n" + "".join(f"- {line}\n" for line in left_out)
    names = [name + (f" (n={len(group)})" if len(group) > 1 else "") for name, group in zip(names, groups)]
    curves = {
        name: band
        for name, group in zip(names, groups)
        if (band := validation_band([RunFolder.of_checkpoint(sources[i]) for i in group]))
    }
    figure = plots.comparison(
        names, [r["recon"] for r in rows], [r["kl"] for r in rows], curves, errors=[r["loss_std"] for r in rows]
    )
    for folder in [output_dir, *([Path(report_dir)] if report_dir else [])]:
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / "results.csv", rows, columns)
        (folder / "results_table.md").write_text(table)
        figure.savefig(folder / "comparison.png")
    print(table + f"\nComparison: {output_dir}" + (f" and {report_dir}" if report_dir else ""), flush=True)
