"""What a VAE's checkpoint carries beyond its weights so that a resume, even inside an epoch and under DDP, goes on
exactly as the uninterrupted run: the training noise generator of each process and the epoch's running training
means. ``ELBOModule`` mixes it in; the rest of resume is in ``vaelab.run``."""

from __future__ import annotations

from typing import Any

import torch

from vaelab.models.metric_names import LOGGED_TERMS

# Validation and test noise restarts from this seed each epoch: checkpoints are chosen on the weights, not the noise.
EVAL_NOISE_SEED = 20_231_108
TRAIN_NOISE_SEED_OFFSET = 7_777_777


class ExactResumeState:
    """A ``LightningModule`` mixin: per-stage noise generators, and their and the training means' checkpoint state.
    The module provides ``epoch_means(stage)`` (``MeanMetric`` per logged term)."""

    def init_resume_state(self) -> None:
        # Each stage's noise has its own generator; training's is checkpointed, so a resume draws the same noise.
        self._noise: dict[str, torch.Generator] = {}
        self.noise_seed = 0  # where the training noise starts: the run's seed (``training.build`` sets it)
        self._restored_train_noise: torch.Tensor | None = None

    def noise_generator(self, stage: str, device: torch.device) -> torch.Generator:
        """The generator of ``stage``'s sampling noise: training's goes on across epochs (and resumes from the
        checkpoint); validation's and test's restart from ``EVAL_NOISE_SEED`` every epoch."""
        generator = self._noise.get(stage)
        if generator is not None and generator.device == device:
            return generator
        generator = torch.Generator(device=device)
        if stage != "train":
            generator.manual_seed(EVAL_NOISE_SEED)
        else:
            # Per DDP rank, offset from the seed so the noise does not replay the weight initialisation's draws.
            generator.manual_seed(self.noise_seed + TRAIN_NOISE_SEED_OFFSET + 1_000_003 * self.global_rank)
            if self._restored_train_noise is not None:
                try:
                    generator.set_state(self._restored_train_noise)
                except RuntimeError:  # a checkpoint from another device type: keep the fresh seed
                    pass
                self._restored_train_noise = None
        self._noise[stage] = generator
        return generator

    def save_resume_state(self, checkpoint: dict[str, Any]) -> None:
        """Into ``checkpoint``: each process's training-noise state and the epoch's training sums so far."""
        # One row per DDP process (this hook runs on each): every process resumes its own noise.
        if "train" in self._noise:
            state = self._noise["train"].get_state()
            checkpoint["vaelab_train_noise_state"] = self.all_gather(state) if self._processes() > 1 else state[None]
        # Summed over the processes (what the epoch's sync does), so a resume goes on with the whole epoch's sums.
        states = {term: mean.metric_state for term, mean in self.epoch_means("train").items()}
        checkpoint["vaelab_train_means"] = {
            term: {name: self._summed_over_processes(value).detach().cpu() for name, value in state.items()}
            for term, state in states.items()
        }

    def load_resume_state(self, checkpoint: dict[str, Any]) -> None:
        """From ``checkpoint``: this process's training-noise state (used when its generator is next made) and the
        epoch's training sums."""
        state = checkpoint.get("vaelab_train_noise_state")  # [processes, state bytes] (a single state before)
        self._noise.pop("train", None)
        self._restored_train_noise = None
        if isinstance(state, torch.Tensor) and state.dtype == torch.uint8:
            if state.dim() == 1:
                self._restored_train_noise = state
            elif len(state) == self._processes():  # on another number of processes each draws from its seed
                # A copy, not the row: Generator.set_state reads a view's storage from its start (torch 2.14: rank
                # 1 resumed with other bytes, or crashed), so every process but the first drew other noise.
                self._restored_train_noise = state[self.global_rank].clone()
        self._restore_train_means(checkpoint.get("vaelab_train_means"))

    def _processes(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _summed_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        return self.all_gather(value).sum(dim=0) if self._processes() > 1 else value

    def _restore_train_means(self, saved: object) -> None:
        """The training means of the epoch a checkpoint was saved in, for a run that resumes inside that epoch (else
        the next epoch resets them): its row then averages every batch. Every process's sums go to process 0."""
        if self._trainer is None or not isinstance(saved, dict):
            return
        if not all(isinstance(saved.get(term), dict) for term in LOGGED_TERMS):
            return
        for term, mean in self.epoch_means("train").items():
            mean.reset()
            mean.update(torch.empty(0, device=self.device))  # marks it updated, adds nothing
            if self.global_rank == 0:
                mean.merge_state({name: torch.as_tensor(value).to(self.device) for name, value in saved[term].items()})
