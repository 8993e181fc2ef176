"""MNIST as in-memory tensors, served in whole batches (no per-sample PIL transforms)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.distributed
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler
from torchvision.datasets import MNIST

from vaelab.data.idx import read_split
from vaelab.errors import VaelabError, check_number

log = logging.getLogger(__name__)

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class InMemoryMNIST(Dataset):
    """Images ``[N, 1, 28, 28]`` float in [0, 1] and labels ``[N]`` int64, indexed a batch at a time.

    ``__getitems__`` lets the DataLoader fetch a whole batch with one tensor index instead of
    N single-sample lookups plus a collate.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


class EpochRandomSampler(RandomSampler):
    """A shuffle that depends only on ``(seed, epoch)``: a run resumed at epoch ``e`` sees the order an
    uninterrupted run would (Lightning calls ``set_epoch`` before each epoch; under DDP it swaps in a
    ``DistributedSampler``, which is seeded the same way)."""

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 100_003 + epoch)


def already_collated(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate function for batches that ``InMemoryMNIST.__getitems__`` already assembled."""
    return batch


def has_mnist_raw(root: str | Path) -> bool:
    """True if ``root/MNIST/raw`` holds the four uncompressed IDX files torchvision reads."""
    raw = Path(root) / "MNIST" / "raw"
    return all((raw / name).is_file() for name in RAW_FILES)


def locate_mnist(data_dir: str | Path, fallback_dirs: Sequence[str | Path], download: bool) -> Path:
    """Return the folder whose ``MNIST/raw`` holds the data, downloading into ``data_dir`` if allowed."""
    candidates = [Path(data_dir), *(Path(d) for d in fallback_dirs)]
    for candidate in candidates:
        if has_mnist_raw(candidate):
            if candidate != Path(data_dir):
                log.info(
                    "MNIST is not in data.data_dir=%s: using the fallback folder %s", data_dir, candidate.resolve()
                )
            return candidate
    looked = ", ".join(str((c / "MNIST" / "raw").resolve()) for c in candidates)
    if download:
        try:
            MNIST(str(data_dir), train=True, download=True)
            MNIST(str(data_dir), train=False, download=True)
        except Exception as error:  # torchvision raises RuntimeError/URLError/OSError offline
            raise VaelabError(
                f"MNIST is not in {looked} and downloading it into {data_dir} failed ({error}); "
                "pass data.data_dir=<folder that holds MNIST/raw/>."
            ) from error
        return Path(data_dir)
    raise VaelabError(
        f"MNIST not found: looked for MNIST/raw/{{{','.join(RAW_FILES)}}} in {looked}; "
        "pass data.data_dir=<folder that holds MNIST/raw/> or data.download=true."
    )


def load_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one official split, each IDX file checked against the format and its partner; images in [0, 1]."""
    prefix = "train" if train else "t10k"
    raw = root / "MNIST" / "raw"
    images, labels = read_split(raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte")
    return images.unsqueeze(1).float().div_(255.0).contiguous(), labels.long()


class MNISTDataModule(pl.LightningDataModule):
    """MNIST with a seeded train/val split of the 60k training images and the official 10k test set.

    Every batch is a tuple ``(images [B, 1, 28, 28] float in [0, 1], labels [B] int64)``.
    """

    def __init__(
        self,
        data_dir: str = "data",
        fallback_data_dirs: Sequence[str] = (),
        download: bool = True,
        val_size: int = 5000,
        split_seed: int = 0,
        shuffle_seed: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("val_size", val_size)):
            # val_size >= 1: checkpoints are chosen by validation loss.
            check_number(f"data.{key}", value, minimum=1, integer=True)
        check_number("data.num_workers", num_workers, minimum=0, integer=True)
        self.data_dir = data_dir
        self.fallback_data_dirs = list(fallback_data_dirs)
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed
        # The training order of epoch e depends on (shuffle_seed, e) only; null: the run's seed.
        self.shuffle_seed = shuffle_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.root: Path | None = None
        self.train_set: InMemoryMNIST | None = None
        self.val_set: InMemoryMNIST | None = None
        self.test_set: InMemoryMNIST | None = None

    def prepare_data(self) -> None:
        self.root = locate_mnist(self.data_dir, self.fallback_data_dirs, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.root is None:  # prepare_data runs on one process per node only
            self.root = locate_mnist(self.data_dir, self.fallback_data_dirs, download=False)
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, labels = load_split(self.root, train=True)
            if self.val_size >= len(labels):
                raise VaelabError(
                    f"data.val_size={self.val_size} leaves no training images: the training split has {len(labels)}."
                )
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            val_index, train_index = order[: self.val_size], order[self.val_size :]
            self.train_set = InMemoryMNIST(images[train_index], labels[train_index])
            self.val_set = InMemoryMNIST(images[val_index], labels[val_index])
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = InMemoryMNIST(*load_split(self.root, train=False))

    def _loader(self, dataset: InMemoryMNIST | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        sampler: Sampler[int] | None = None
        if shuffle:
            seed = self.shuffle_seed if self.shuffle_seed is not None else torch.initial_seed()
            sampler = EpochRandomSampler(dataset, seed=seed % (1 << 31))
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's DistributedSampler pads the last batch with repeated images; evaluation must not
            # count an image twice, so each process takes every world_size-th image and nothing more.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=already_collated,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)
