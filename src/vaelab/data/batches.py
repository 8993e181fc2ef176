"""The images of a split in memory, served a whole batch at a time, in the pixels' convention (``data.binarize``), and
the training loader that a checkpoint resumes inside an epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler


class InMemoryImages(Dataset):
    """Images ``[N, 1, 28, 28]`` kept as their grey levels (``pixels``, uint8) and labels ``[N]`` int64, on one device,
    indexed a batch at a time: a batch becomes float in [0, 1] where the set is, so a set on the GPU copies nothing
    to it per step (and holds a quarter of the float bytes).

    ``__getitems__`` lets the DataLoader fetch a whole batch with one tensor index instead of
    N single-sample lookups plus a collate. ``draw_seed``: each batch served is drawn from Bernoulli(grey level)
    (dynamic binarization), from a generator seeded by ``draw_seed`` and the batch's first indices, so a resumed
    epoch serves the draws an uninterrupted one would.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, draw_seed: int | None = None) -> None:
        self.pixels = pixels
        self.labels = labels
        self.draw_seed = draw_seed

    @property
    def images(self) -> torch.Tensor:
        """All the images, float in [0, 1] (a new tensor each time)."""
        return unit_interval(self.pixels)

    def to(self, device: torch.device) -> None:
        """Keep the set on ``device``."""
        self.pixels, self.labels = self.pixels.to(device), self.labels.to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._served(unit_interval(self.pixels[index]), [index]), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.pixels.device)
        return self._served(unit_interval(self.pixels[index]), indices), self.labels[index]

    def _served(self, images: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
        if self.draw_seed is None:
            return images
        # Within an epoch each image starts one batch at most; across epochs the first two indices repeat almost never.
        key = self.draw_seed
        for index in [*indices[:2], -1][:2]:
            key = (key * 1_000_003 + int(index) + 1) % (1 << 62)
        return torch.bernoulli(images, generator=torch.Generator(device=images.device).manual_seed(key))


def unit_interval(pixels: torch.Tensor) -> torch.Tensor:
    """Grey levels 0-255 (uint8) as float in [0, 1]."""
    return pixels.float().div_(255.0)


def binarized(pixels: torch.Tensor, binarize: str, seed: int) -> torch.Tensor:
    """Grey levels 0-255 (uint8) as 0 or 255, by ``binarize``: ``threshold``, grey level > 0.5; ``dynamic``, each pixel
    drawn once from Bernoulli(grey level) with a generator seeded by ``seed``; ``none``, unchanged."""
    if binarize == "threshold":
        return (pixels > 127).to(torch.uint8).mul_(255)  # 128/255 > 0.5 > 127/255
    if binarize == "dynamic":
        drawn = torch.bernoulli(unit_interval(pixels), generator=torch.Generator().manual_seed(seed))
        return drawn.to(torch.uint8).mul_(255)
    return pixels


class EpochRandomSampler(RandomSampler):
    """A shuffle that depends only on ``(seed, epoch)`` (Lightning calls ``set_epoch``): a run resumed at epoch ``e``
    sees the order an uninterrupted run would."""

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self.seed * 100_003 + epoch)


class ResumableLoader(DataLoader):
    """The training loader, resumable inside an epoch: its ``state_dict`` (in every checkpoint) holds the epoch and
    its batches trained (``progress``); on a resume it skips those batches of that epoch's order. Exact for samplers
    whose order depends only on the epoch (``EpochRandomSampler``, Lightning's ``DistributedSampler`` under DDP)."""

    def __init__(self, *args: Any, progress: Callable[[], tuple[int, int]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches trained of it), from a checkpoint

    def __iter__(self) -> Iterator[Any]:
        epoch = getattr(self.sampler, "epoch", None)  # set by Lightning (set_epoch) before the first batch is drawn
        resume_at, self._resume_at = self._resume_at, None
        batches = super().__iter__()
        for _ in range(resume_at[1] if resume_at is not None and resume_at[0] == epoch else 0):
            next(batches, None)  # in-memory batches: drawing and dropping them costs next to nothing
        yield from batches

    def state_dict(self) -> dict[str, int]:
        epoch, trained = self.progress() if self.progress else (0, 0)
        return {"epoch": epoch, "batches": trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_at = (int(state.get("epoch", -1)), int(state.get("batches", 0)))


def already_collated(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate function for batches that ``InMemoryImages.__getitems__`` already assembled."""
    return batch
