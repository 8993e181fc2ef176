"""A data set of 28x28 grey images in MNIST's IDX layout (MNIST, Fashion-MNIST, KMNIST, your own), as in-memory
tensors served in whole batches (no per-sample PIL transforms). ``conf/data/`` has one config per data set."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Sampler

from vaelab.data.batches import (
    EpochRandomSampler,
    InMemoryImages,
    ResumableLoader,
    already_collated,
    binarized,
)
from vaelab.data.idx import MNIST_FILES, locate, read_split
from vaelab.errors import VaelabError
from vaelab.models.metric_names import BINARIZE
from vaelab.validators import check_choice, check_number

log = logging.getLogger(__name__)


def check_labels(num_classes: int, datamodule: object, model: str) -> None:
    """A conditional model (``num_classes`` > 0) needs a labeled data set with that many classes; else one line."""
    if not num_classes:
        return
    name = getattr(datamodule, "name", type(datamodule).__name__)
    if not getattr(datamodule, "labeled", True):
        raise VaelabError(
            f"{model} is conditional and needs labels, but {name} has none (data.files.train_labels is null): "
            "train a model without labels (model=vae or model=conv_vae)."
        )
    classes = getattr(datamodule, "num_classes", num_classes)
    if classes != num_classes:
        raise VaelabError(f"{model} conditions on {num_classes} classes, {name} has {classes} (data.num_classes).")


class IDXDataModule(pl.LightningDataModule):
    """A data set in MNIST's layout (MNIST by default) with a seeded train/val split of its training images and
    its test set. Every batch is a tuple ``(images [B, 1, 28, 28] float in [0, 1], labels [B] int64)``; the
    labels are ``UNLABELED`` (-1) for a data set without labels files (``files.train_labels: null``).

    ``name``: the folder under ``data_dir`` (``<data_dir>/<name>/raw/``); ``files``: the four IDX file names;
    ``class_names``: one per class, for figures and the projector (None: the class numbers);
    ``torchvision_dataset``: the class that downloads it (None: it cannot be downloaded).
    """

    def __init__(
        self,
        data_dir: str = "data",
        name: str = "MNIST",
        files: dict[str, str | None] | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int = 10,
        torchvision_dataset: str | None = "torchvision.datasets.MNIST",
        download: bool = True,
        val_size: int = 5000,
        split_seed: int = 0,
        shuffle_seed: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        pin_memory: bool = False,
        device: str | None = "auto",
        binarize: str = "none",
        binarize_seed: int = 0,
    ) -> None:
        super().__init__()
        check_choice("data.binarize", binarize, BINARIZE, "binarization")
        check_number("data.binarize_seed", binarize_seed, minimum=0, integer=True, maximum=2**32 - 1)
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("val_size", val_size)):
            # val_size >= 1: checkpoints are chosen by validation loss.
            check_number(f"data.{key}", value, minimum=1, integer=True)
        check_number("data.num_workers", num_workers, minimum=0, integer=True)
        if device not in (None, "auto"):
            try:
                torch.device(device)
            except (RuntimeError, TypeError):
                raise VaelabError(
                    f"data.device must be auto, null or a device name (cpu, cuda:0), got {device!r}."
                ) from None
        check_number("data.num_classes", num_classes, minimum=1, integer=True)
        self.files = {**MNIST_FILES, **(files or {})}
        if not self.files["train_images"] or not self.files["test_images"]:
            raise VaelabError("data.files.train_images and data.files.test_images must name IDX files.")
        if bool(self.files["train_labels"]) != bool(self.files["test_labels"]):
            raise VaelabError("data.files: give labels files for both splits or for neither (an unlabeled set).")
        if class_names is not None and len(class_names) != num_classes:
            raise VaelabError(f"data.class_names holds {len(class_names)} names for data.num_classes={num_classes}.")
        self.name = name
        self.class_names = [str(n) for n in class_names] if class_names is not None else None
        self.num_classes = num_classes
        self.labeled = bool(self.files["train_labels"])
        self.torchvision_dataset = torchvision_dataset
        self.data_dir = data_dir
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed
        # The training order of epoch e depends on (shuffle_seed, e) only (the configs pass the run's seed).
        self.shuffle_seed = shuffle_seed or 0
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.device = device
        self.binarize = binarize
        # dynamic: the validation and test images are drawn once from this seed (the same digits for every model).
        self.binarize_seed = binarize_seed
        self.root: Path | None = None
        self.train_set: InMemoryImages | None = None
        self.val_set: InMemoryImages | None = None
        self.test_set: InMemoryImages | None = None

    def locate(self, download: bool) -> Path:
        return locate(self.data_dir, download, self.name, self.files, self.torchvision_dataset)

    def load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One split, each IDX file checked against the format and its partner: grey levels (uint8), labels
        ``UNLABELED`` where the data set has no labels file."""
        prefix, raw = "train" if train else "test", self.root / self.name / "raw"
        labels_file = self.files.get(f"{prefix}_labels")
        images, labels = read_split(raw / self.files[f"{prefix}_images"], raw / labels_file if labels_file else None,
                                    self.num_classes)  # fmt: skip
        return images.unsqueeze(1).contiguous(), labels.long()

    def check_files(self) -> None:
        """Find (or download) and read every file now: a missing, truncated or mismatched one is one line before the
        run prints or writes anything. The splits stay loaded for ``setup``."""
        self.prepare_data()
        self.setup()

    def prepare_data(self) -> None:
        self.root = self.locate(self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.root is None:  # prepare_data runs on one process per node only
            self.root = self.locate(download=False)
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, labels = self.load(train=True)
            if self.val_size >= len(labels):
                raise VaelabError(
                    f"data.val_size={self.val_size} leaves no training images: the training split has {len(labels)}."
                )
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            val_index, train_index = order[: self.val_size], order[self.val_size :]
            fixed = binarized(images, self.binarize, self.binarize_seed)  # drawn once, for validation
            draws = self.shuffle_seed % (1 << 31) if self.binarize == "dynamic" else None  # the run's training draws
            train_images = images if draws is not None else fixed
            self.train_set = InMemoryImages(train_images[train_index], labels[train_index], draw_seed=draws)
            self.val_set = InMemoryImages(fixed[val_index], labels[val_index])
        if stage in (None, "test", "predict") and self.test_set is None:
            test_images, test_labels = self.load(train=False)
            self.test_set = InMemoryImages(binarized(test_images, self.binarize, self.binarize_seed + 1), test_labels)
        if (device := self.placement()) is not None:
            for split in (self.train_set, self.val_set, self.test_set):
                if split is not None:
                    split.to(device)

    def placement(self) -> torch.device | None:
        """Where the splits live: ``data.device``; ``auto``, the trainer's device (a GPU run keeps MNIST on its GPU);
        None (``null``, or with worker processes or pinned memory, which take CPU tensors): the CPU, the loader
        copying each batch over."""
        if self.device is None or self.num_workers > 0 or self.pin_memory:
            return None
        if self.device != "auto":
            return torch.device(self.device)
        return self.trainer.strategy.root_device if self.trainer is not None else None

    def _loader(self, dataset: InMemoryImages | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        sampler: Sampler[int] | None = None
        if shuffle:
            sampler = EpochRandomSampler(dataset, seed=self.shuffle_seed % (1 << 31))
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's DistributedSampler pads with repeated images: here each image counts once.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        resumable = {"progress": self._trained_in_epoch} if shuffle else {}
        return (ResumableLoader if shuffle else DataLoader)(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=already_collated,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **resumable,
        )

    def _trained_in_epoch(self) -> tuple[int, int]:
        """``(epoch, batches of it trained)``: Lightning's progress counts a batch whose step ran as done (a resume
        does not train it again) and one that was only fetched as not."""
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return self.trainer.current_epoch, progress.processed

    def state_dict(self) -> dict[str, Any]:
        """What the checkpoints keep of the data (Lightning saves it under this class's name): the pixels' convention,
        which an evaluation of the checkpoint scores with and a resume must keep."""
        return {"binarize": self.binarize, "binarize_seed": self.binarize_seed}

    @staticmethod
    def recorded_pixels(state: dict[str, Any] | None) -> dict[str, Any]:
        """The pixels' convention a checkpoint's data state records (``state_dict``); a checkpoint of an older vaelab,
        without one, trained on grey levels."""
        state = state or {}
        return {"binarize": state.get("binarize", "none"), "binarize_seed": state.get("binarize_seed", 0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        recorded = self.recorded_pixels(state)
        if recorded != self.state_dict():
            given = " ".join(f"data.{key}={value}" for key, value in recorded.items())
            raise VaelabError(f"the checkpoint was trained with {given}: a run goes on with the pixels it started "
                              "with (start a new run for another convention).")  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)
