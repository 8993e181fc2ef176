"""The IDX data module: MNIST and data sets in its layout (Fashion-MNIST, unlabeled ones), checked files, splits."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import TINY_TEST, TINY_TRAIN, compose_config, synthetic_digits, write_mnist
from vaelab.data import IDXDataModule
from vaelab.data.idx import locate
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate
from vaelab.training import train


def make_datamodule(data_dir: Path, **overrides) -> IDXDataModule:
    settings = dict(data_dir=str(data_dir), download=False, val_size=100, batch_size=32, eval_batch_size=64)
    datamodule = IDXDataModule(**{**settings, **overrides})
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_splits_sizes_and_pixel_values(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist)
    assert len(datamodule.train_set) == TINY_TRAIN - 100
    assert len(datamodule.val_set) == 100
    assert len(datamodule.test_set) == TINY_TEST
    # The test split is the official test file, in order, scaled to [0, 1].
    expected_images, expected_labels = synthetic_digits(TINY_TEST, seed=1)
    assert torch.equal(datamodule.test_set.labels, torch.from_numpy(expected_labels).long())
    np.testing.assert_allclose(datamodule.test_set.images[:, 0].numpy(), expected_images / 255.0, atol=1e-6)


def test_train_and_val_partition_the_training_file(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist)
    images, _ = synthetic_digits(TINY_TRAIN, seed=0)
    all_rows = {row.tobytes() for row in (images / 255.0).astype(np.float32).reshape(TINY_TRAIN, -1)}
    split_rows = [
        row.numpy().tobytes() for split in (datamodule.train_set, datamodule.val_set) for row in split.images.flatten(1)
    ]
    assert len(split_rows) == TINY_TRAIN and set(split_rows) == all_rows


def test_the_splits_live_on_the_trainers_device_as_grey_levels(tiny_mnist: Path) -> None:
    """data.device=auto keeps the uint8 images where the trainer runs and makes each batch float there: on a GPU
    no batch crosses from the host. The meta device stands in for one: a batch from it is proof it was made there."""
    datamodule = make_datamodule(tiny_mnist)  # no trainer: the CPU
    assert datamodule.train_set.pixels.dtype == torch.uint8 and datamodule.train_set.pixels.device.type == "cpu"
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1 and labels.dtype == torch.long
    datamodule.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    datamodule.setup("fit")  # Lightning calls it once the trainer's device is known
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()):
        images, labels = next(iter(loader))
        assert images.device.type == labels.device.type == "meta" and images.dtype == torch.float32
    assert make_datamodule(tiny_mnist, device=None).val_set.pixels.device.type == "cpu"  # data.device=null
    with pytest.raises(VaelabError, match="^data.device must be auto, null or a device name"):
        make_datamodule(tiny_mnist, device="gpuu")


def test_split_is_seeded(tiny_mnist: Path) -> None:
    first = make_datamodule(tiny_mnist, split_seed=3).val_set.images
    again = make_datamodule(tiny_mnist, split_seed=3).val_set.images
    other = make_datamodule(tiny_mnist, split_seed=4).val_set.images
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_batches_carry_images_and_labels(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist)
    batches = list(datamodule.train_dataloader())
    images, labels = batches[0]
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (32,) and labels.dtype == torch.int64
    assert sum(len(b[0]) for b in batches) == TINY_TRAIN - 100
    assert 0.0 <= images.min() and images.max() <= 1.0
    val_images, _ = next(iter(datamodule.val_dataloader()))
    assert val_images.shape[0] == 64
    # Shuffled: two epochs visit the training images in different orders, each epoch's order fixed by its number
    # (a resumed run sees the order the uninterrupted one would).
    loader = datamodule.train_dataloader()
    first_epoch = next(iter(loader))[0]
    loader.sampler.set_epoch(1)
    second_epoch = next(iter(loader))[0]
    assert not torch.equal(first_epoch, second_epoch)
    other_loader = make_datamodule(tiny_mnist).train_dataloader()
    other_loader.sampler.set_epoch(1)
    assert torch.equal(next(iter(other_loader))[0], second_epoch)


def test_the_data_folder_comes_from_vaelab_data_dir(tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One documented way to point every command at a data folder; no other folder is searched."""
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tiny_mnist))
    assert compose_config("train", []).data.data_dir == str(tiny_mnist)
    monkeypatch.delenv("VAELAB_DATA_DIR")
    assert compose_config("train", []).data.data_dir.endswith("/data")


def test_missing_data_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(VaelabError) as error:
        locate(tmp_path / "nowhere", download=False)
    message = str(error.value)
    assert "nowhere" in message and "data.data_dir=" in message and "VAELAB_DATA_DIR" in message
    assert "\n" not in message


def _idx(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    return (
        struct.pack(">HBB", 0, type_byte, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    )


BAD_FILES = {
    "truncated": ("train-images-idx3-ubyte", lambda data: data[:5000], "truncated or corrupt"),
    "bad magic": ("train-labels-idx1-ubyte", lambda data: b"\x01\x02" + data[2:], "bad magic number"),
    "wrong type": ("t10k-labels-idx1-ubyte", lambda data: data[:2] + b"\x0d" + data[3:], "type 0x0d"),
    "extra bytes": ("t10k-images-idx3-ubyte", lambda data: data + b"\x00" * 10, "truncated or corrupt"),
    "too few labels": (
        "train-labels-idx1-ubyte",
        lambda data: _idx(np.zeros(599, np.uint8)),
        "599 labels for the 600 images",
    ),
    "label 10": (
        "t10k-labels-idx1-ubyte",
        lambda data: _idx(np.full(200, 10, np.uint8)),
        "label 10 is outside the classes 0-9",
    ),
    "not 28x28": ("train-images-idx3-ubyte", lambda data: _idx(np.zeros((600, 28, 27), np.uint8)), "28x27"),
    "labels as images": (
        "train-labels-idx1-ubyte",
        lambda data: _idx(np.zeros((600, 28, 28), np.uint8)),
        "3 dimensions",
    ),
    "empty": ("t10k-images-idx3-ubyte", lambda data: b"", "bad magic number"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_every_idx_file_is_checked(tmp_path: Path, case: str) -> None:
    name, corrupt, message = BAD_FILES[case]
    raw = write_mnist(tmp_path) / "MNIST" / "raw"
    (raw / name).write_bytes(corrupt((raw / name).read_bytes()))
    with pytest.raises(VaelabError) as error:
        make_datamodule(tmp_path)
    assert message in str(error.value) and name in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("settings", [{"val_size": TINY_TRAIN}, {"val_size": 0}, {"batch_size": 0}])
def test_bad_sizes_are_rejected(tiny_mnist: Path, settings: dict) -> None:
    with pytest.raises(VaelabError):
        make_datamodule(tiny_mnist, **settings)


def test_real_mnist(real_mnist: Path) -> None:
    datamodule = make_datamodule(real_mnist, val_size=5000)
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (55000, 5000, 10000)
    assert torch.bincount(datamodule.test_set.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    mean_pixel = datamodule.test_set.images.mean().item()
    assert 0.13 < mean_pixel < 0.134  # MNIST's well-known mean intensity, 0.1325 on the test set


FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]  # fmt: skip
ONE_EPOCH = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=none",
             "data.batch_size=50", "data.val_size=100", "data.download=false",
             "callbacks.figures.grid_size=3", "callbacks.figures.num_points=50", "test=false"]  # fmt: skip


def test_fashion_mnist_trains_and_evaluates_with_its_class_names(tmp_path: Path) -> None:
    data = write_mnist(tmp_path / "data", name="FashionMNIST")
    common = ["data=fashion_mnist", f"data.data_dir={data}"]
    run = tmp_path / "run"
    metrics = train(compose_config("train", ["model=cond_conv_vae", *common, *ONE_EPOCH], run))
    assert metrics["status"] == "completed" and (run / "figures" / "latent_grid_digit9.png").is_file()
    overrides = [*common, "data.download=false", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                 "iwae_samples=null", "figures.num_points=50", "figures.grid_size=3"]  # fmt: skip
    evaluate(compose_config("eval", overrides, tmp_path / "eval"))
    (metadata,) = (tmp_path / "eval").rglob("metadata.tsv")
    rows = [line.split("\t") for line in metadata.read_text().splitlines()]
    assert rows[0] == ["class", "label", "index"] and len(rows) == 1 + 200
    assert all(FASHION_NAMES[int(label)] == name for name, label, _ in rows[1:])
    with pytest.raises(VaelabError, match="FashionMNIST not found: looked for FashionMNIST/raw/"):
        train(compose_config("train", [*common, f"data.data_dir={tmp_path / 'none'}", *ONE_EPOCH], tmp_path / "r"))


def test_an_unlabeled_idx_set_trains_label_free_models_only(tmp_path: Path) -> None:
    data = write_mnist(tmp_path / "data", name="Mine", labels=False)
    mine = [f"data.data_dir={data}", "data.name=Mine", "data.files.train_labels=null", "data.files.test_labels=null",
            "data.torchvision_dataset=null", *ONE_EPOCH]  # fmt: skip
    metrics = train(compose_config("train", ["model=vae", *mine], tmp_path / "vae"))
    assert metrics["status"] == "completed" and (tmp_path / "vae" / "figures" / "latent_scatter.png").is_file()
    with pytest.raises(VaelabError) as error:
        train(compose_config("train", ["model=cond_conv_vae", *mine], tmp_path / "cond"))
    assert str(error.value).startswith("model=cond_conv_vae is conditional and needs labels, but Mine has none")
    with pytest.raises(
        VaelabError,
        match=r"Mine not found: .*pass data.data_dir=<folder that holds Mine/raw/> \(or set VAELAB_DATA_DIR\)\.$",
    ):
        train(compose_config("train", ["model=vae", *mine, f"data.data_dir={tmp_path}"], tmp_path / "none"))


@pytest.mark.parametrize("settings, words", [
    ({"class_names": ["a", "b"]}, "data.class_names holds 2 names for data.num_classes=10"),
    ({"files": {"train_labels": None}}, "give labels files for both splits or for neither"),
    ({"num_classes": 5}, "label 9 is outside the classes 0-4 (data.num_classes)"),
])  # fmt: skip
def test_bad_data_set_settings_are_one_line(tiny_mnist: Path, settings: dict, words: str) -> None:
    with pytest.raises(VaelabError, match=re.escape(words)):
        make_datamodule(tiny_mnist, **settings)
