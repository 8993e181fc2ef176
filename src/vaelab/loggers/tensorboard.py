"""TensorBoard, in one place: run names that say which run it is, the HParams entry of a run (its curated
hyperparameters and final metrics), the Custom Scalars layout, and test metrics drawn at the epoch of the
checkpoint they were computed from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from vaelab.config_tree import flat_config
from vaelab.figures.plots import png_pixels
from vaelab.job import Job
from vaelab.loggers import naming
from vaelab.loggers.base import RunHooks

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Final metrics shown in TensorBoard's HParams tab, under their own tags so the curves stay clean.
HPARAM_METRICS = {"val/loss": "hp/val_loss", "test/loss": "hp/test_loss", "val/nelbo": "hp/val_nelbo"}


# The HParams tab shows a run's model, these keys, ``model.*`` and the keys of HPARAM_GROUPS the command line set.
HPARAM_KEYS = ("data.batch_size", "data.val_size", "trainer.max_epochs", "trainer.precision", "seed", "tags")
HPARAM_GROUPS = ("model", "data", "trainer", "seed")  # overrides of these keys join the table (sweeps vary them)
NOT_HPARAMS = {"model.optimizer.fused", "model.channels_last", "data.data_dir",
               "data.download", "data.num_workers", "data.pin_memory"}  # fmt: skip
# Train and validation curves of one quantity in one chart (TensorBoard's Custom Scalars tab).
SCALARS_LAYOUT = {
    "losses (per image, nats)": {
        name: ["Multiline", [f"^train/{key}$", f"^val/{key}$"]]  # regexes: not train/loss_step
        for name, key in (("loss", "loss"), ("reconstruction", "recon"), ("KL", "kl"), ("negative ELBO", "nelbo"))
    },
    "schedule": {"learning rate": ["Multiline", ["^train/lr$"]]},
}


def override_keys(overrides: Sequence[str]) -> set[str]:
    """The config keys that command-line overrides set: ``model.beta`` of ``model.beta=0.5`` or ``+x.y=1``."""
    return {override.split("=", 1)[0].lstrip("+~") for override in overrides if "=" in override}


def tensorboard_hparams(config: Mapping[str, Any], job: Job) -> dict[str, Any]:
    """The curated hyperparameters of a run for the HParams tab (see ``HPARAM_KEYS``); lists as text."""
    flat = flat_config(config)
    chosen = {key for key in flat if key.startswith("model.") and not key.split(".")[-1].startswith("_")}
    chosen |= {key for key in HPARAM_KEYS if key in flat}
    chosen |= {key for key in override_keys(job.overrides) if key in flat and key.split(".")[0] in HPARAM_GROUPS}
    chosen -= NOT_HPARAMS
    if not flat.get("tags"):
        chosen.discard("tags")
    params: dict[str, Any] = {group: job.choices[group] for group in ("model", "experiment") if job.choices.get(group)}
    for key in sorted(chosen):
        value = flat[key]
        # Integers as text: TensorBoard shows every number with two decimals (a batch size of "128.00").
        params[key] = value if isinstance(value, bool | float | str) else str(value)
    return params


class TensorBoardLogger(RunHooks, LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, writing to ``<save_dir>/<run name>`` (``naming.run_name``), so TensorBoard
    names the run whether it is pointed at the run, a sweep or all of ``logs/``. A run resumed in place goes on in
    the folder it has. After :meth:`before_test`, test metrics are drawn at the step and epoch of the checkpoint
    they were computed from (the best one), not at the end of training. ``job``: the job it logs (``train`` passes
    it), which names the run and says what the command line varied."""

    def __init__(self, save_dir: str, run: str | None = None, job: Job | None = None, **kwargs: Any) -> None:
        self.job = job or Job()
        existing = sorted(p.name for p in Path(save_dir).glob("*") if any(p.glob("events.out.tfevents.*")))
        self.run = run or (existing[0] if len(existing) == 1 else naming.run_name(self.job, varied=True))
        super().__init__(save_dir, **{"name": "", **kwargs})
        self._test_step: int | None = None
        self._test_epoch: int | None = None

    @property
    def log_dir(self) -> str:
        return str(Path(self.root_dir) / self.run)

    @property
    def version(self) -> None:  # the run is named by its folder; no "v_num" of its last characters in the progress bar
        return None

    @rank_zero_only
    def log_outcome(self, params: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
        """The run's HParams entry: ``params`` and its final ``metrics``. Every metric of ``HPARAM_METRICS`` is declared
        (TensorBoard takes the columns from one run), so a run without one leaves its cell empty, not NaN."""
        from torch.utils.tensorboard.summary import hparams

        self.log_metrics(metrics, step)
        declared = {tag: 0.0 for tag in HPARAM_METRICS.values()}  # only the names reach the summary
        experiment, start, end = hparams(dict(params), declared)
        # The "differs" columns come first and ticked: the model, and what the sweep (or the command line) varied.
        first = {"model", "experiment", *override_keys(self.job.swept or self.job.overrides)}
        content = HParamsPluginData.FromString(experiment.value[0].metadata.plugin_data.content)
        for info in content.experiment.hparam_infos:
            info.differs = info.name in first
        experiment.value[0].metadata.plugin_data.content = content.SerializeToString()
        writer = self.experiment._get_file_writer()  # no public writer of raw summaries (test_dashboards checks)
        for summary in (experiment, start, end):
            writer.add_summary(summary, step)
        # After Lightning closed its writer: flushed now, or a run can end before its HParams entry is written.
        self.experiment.flush()

    def start_run(self, config: dict[str, Any], tags: Sequence[str], resumed_step: int | None) -> None:
        """The Custom Scalars layout (the learning-rate chart only with a schedule: it would stay empty) and the
        tags; the HParams entry waits for the outcome (real metrics)."""
        scheduled = isinstance(config.get("model"), dict) and config["model"].get("scheduler")
        self.experiment.add_custom_scalars({key: charts for key, charts in SCALARS_LAYOUT.items()
                                            if key != "schedule" or scheduled})  # fmt: skip
        if tags:
            self.experiment.add_text("tags", ", ".join(tags))

    def before_test(self, step: int, epoch: int) -> None:
        self._test_step, self._test_epoch = step, epoch

    def publish_figure(self, name: str, figure: Figure, png_file: Path, step: int | None) -> None:
        if step is not None:  # the final figure repeats the last epoch's
            pixels = png_pixels(png_file)  # the PNG as drawn: not drawn again
            self.experiment.add_image(f"figures/{name}", pixels, global_step=step, dataformats="HWC")

    def finish_run(
        self, config: Mapping[str, Any], metrics: Mapping[str, float], best_checkpoint: str, step: int
    ) -> None:
        final = {tag: metrics[name] for name, tag in HPARAM_METRICS.items() if name in metrics}
        self.log_outcome(tensorboard_hparams(config, self.job), final, step)

    def publish_evaluation(self, scores: Mapping[str, float], figures: Mapping[str, Any], step: int) -> None:
        """``test/<score>`` scalars and ``figures/<name>`` images at the checkpoint's step: beside the training
        run's own curves when TensorBoard shows both folders."""
        for name, value in scores.items():
            self.experiment.add_scalar(f"test/{name}", value, global_step=step)
        for name, pixels in figures.items():
            self.experiment.add_image(f"figures/{name}", pixels, global_step=step, dataformats="HWC")
        self.experiment.flush()

    def describe(self) -> str:  # the folder above the run's: TensorBoard then shows the run's name
        return (
            f"TensorBoard:  tensorboard --logdir {self.root_dir}  (losses first: http://localhost:6006/#custom_scalars)"
        )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._test_step is not None and any(name.startswith("test/") for name in metrics):
            step = self._test_step
            metrics = {**metrics, **({"epoch": self._test_epoch} if "epoch" in metrics else {})}
        super().log_metrics(metrics, step)
