"""The checks of a composed config that need neither torch nor Lightning: the commands run them before importing
either (a refused setting answers in about a second, not after ~7 s of imports), and ``train``/``evaluate`` run them
again for callers from Python. Each failure is one ``VaelabError`` line naming the key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from vaelab.errors import VaelabError
from vaelab.figures.settings import FigureSettings
from vaelab.job import Job
from vaelab.models.metric_names import BINARIZE, LIKELIHOODS, LOGGED_TERMS, STAGES
from vaelab.validators import check_added_keys, check_choice, check_finite, check_number, check_seed

# trainer.precision: vaelab's "auto" (machine.resolve_precision) and what Lightning's Trainer takes.
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true",
              "transformer-engine", "transformer-engine-float16", "32", "16", "bf16", "64", 32, 16, 64)  # fmt: skip


def check_train_settings(cfg: DictConfig, job: Job) -> None:
    """Values no training run can use (``job``: what its command line added)."""
    check_common(cfg, job)
    check_number("trainer.max_epochs", cfg.trainer.get("max_epochs"), minimum=1, integer=True)
    check_optimized_metric(cfg)
    if cfg.get("resume") and cfg.get("ckpt_path"):
        raise VaelabError(f"resume={cfg.resume} and ckpt_path={cfg.ckpt_path} both say where to go on from; pass one: "
                          "resume=<run folder> goes on in that folder, ckpt_path=<file> in a new one")  # fmt: skip


def check_eval_settings(cfg: DictConfig, job: Job) -> None:
    """Values no evaluation can use (``job``: what its command line added)."""
    check_common(cfg, job)
    # null skips the estimate; zero, a fraction or a negative count of samples has no meaning.
    if cfg.get("iwae_samples") is not None:
        check_number("iwae_samples", cfg.iwae_samples, minimum=1, integer=True)
    # The report needs test images: 0 batches would leave every number empty.
    if cfg.trainer.get("limit_test_batches") is not None:
        check_number("trainer.limit_test_batches", cfg.trainer.limit_test_batches, minimum=0, strict=True)
    FigureSettings.from_config(cfg.get("figures") or {}, "figures")


def check_common(cfg: DictConfig, job: Job) -> None:
    check_finite(OmegaConf.to_container(cfg, resolve=True))
    check_seed(cfg.get("seed"))
    check_added_keys(cfg, job.overrides, job.choices)
    # The conventions of the numbers, before torch loads (the data module and the model check them again).
    if "binarize" in (cfg.get("data") or {}):
        check_choice("data.binarize", cfg.data.binarize, BINARIZE, "binarization")
    if "likelihood" in (cfg.get("model") or {}):
        check_choice("model.likelihood", cfg.model.likelihood, LIKELIHOODS, "likelihood")
    precision = cfg.trainer.get("precision")
    if precision not in PRECISIONS:
        choices = ", ".join(str(choice) for choice in PRECISIONS[:7])
        raise VaelabError(f"trainer.precision={precision} is not a precision; choose from {choices} (auto: bf16-mixed "
                          "where the hardware runs bf16 natively, else 32-true)")  # fmt: skip


def check_optimized_metric(cfg: DictConfig) -> None:
    """``optimized_metric`` (what train.py hands a sweeper) must be a metric this run logs (``{stage}/{recon,kl,
    loss,nelbo}``, test ones only when it tests): a misspelled one would give every trial the value None."""
    stages = [stage for stage in STAGES if cfg.get("test") or stage != "test"]
    name, choices = cfg.get("optimized_metric"), [f"{s}/{term}" for s in stages for term in (*LOGGED_TERMS, "nelbo")]
    if name is not None and name not in choices:
        raise VaelabError(f"optimized_metric={name} is not a metric this run logs; choose from {', '.join(choices)}")
