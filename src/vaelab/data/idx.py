"""Find a data set's IDX files (MNIST's format; downloaded where torchvision can) and read them, checked: a missing
file, or one that does not fit the format or its partner, is one error line.

IDX layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each
dimension as a big-endian uint32, then the data, row-major.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaelab.errors import VaelabError

UNSIGNED_BYTE = 0x08
IMAGE_SHAPE = (28, 28)
UNLABELED = -1  # the label of every image of a data set without labels files


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array in ``path``, which must be an IDX file of unsigned bytes with ``ndim`` dimensions."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VaelabError(f"cannot read {path}: {error.strerror}") from error
    header_size = 4 + 4 * ndim
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise VaelabError(f"{path} is not an IDX file (bad magic number); replace it with the original MNIST file.")
    if data[2] != UNSIGNED_BYTE or data[3] != ndim:
        raise VaelabError(
            f"{path}: expected an IDX file of unsigned bytes with {ndim} dimensions, "
            f"the header says type 0x{data[2]:02x} with {data[3]} dimensions."
        )
    if len(data) < header_size:
        raise VaelabError(f"{path} is truncated inside its header.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise VaelabError(
            f"{path} holds {len(data)} bytes, its header ({' x '.join(map(str, shape))}) needs {expected}: "
            "truncated or corrupt."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def read_split(images_path: Path, labels_path: Path | None, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 28, 28]`` uint8 and labels ``[N]`` int64 (``UNLABELED`` without a labels file), checked
    against each other and the classes 0 .. ``num_classes`` - 1."""
    images = read_idx(images_path, ndim=3)
    if images.shape[1:] != IMAGE_SHAPE:
        raise VaelabError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, vaelab's models take 28x28.")
    if len(images) == 0:
        raise VaelabError(f"{images_path} holds no images.")
    if labels_path is None:
        return torch.from_numpy(images.copy()), torch.full((len(images),), UNLABELED, dtype=torch.long)
    labels = read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise VaelabError(
            f"{labels_path} holds {len(labels)} labels for the {len(images)} images of {images_path.name}."
        )
    if labels.max() >= num_classes:
        raise VaelabError(
            f"{labels_path}: label {int(labels.max())} is outside the classes 0-{num_classes - 1} (data.num_classes)."
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()).long()


# MNIST's file names, which Fashion-MNIST and KMNIST share; a data set's config may name others.
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def locate(
    data_dir: str | Path,
    download: bool,
    name: str = "MNIST",
    files: dict[str, str | None] = MNIST_FILES,
    torchvision_dataset: str | None = "torchvision.datasets.MNIST",
) -> Path:
    """``data_dir``, which must hold ``<name>/raw/<files>`` (torchvision's layout), downloading them there with
    ``torchvision_dataset``'s downloader if allowed."""
    folder = Path(data_dir)
    if all((folder / name / "raw" / file).is_file() for file in files.values() if file):
        return folder
    looked = str((folder / name / "raw").resolve())
    wanted = ",".join(file for file in files.values() if file)
    if download and torchvision_dataset:
        import hydra.utils

        try:
            downloader = hydra.utils.get_class(torchvision_dataset)
            downloader(str(data_dir), train=True, download=True)
            downloader(str(data_dir), train=False, download=True)
        except Exception as error:  # torchvision raises RuntimeError/URLError/OSError offline
            reason = " ".join(str(error).split())  # torchvision's message spans several lines: one line here
            raise VaelabError(
                f"{name} is not in {looked} and downloading it into {data_dir} failed ({reason}); "
                f"pass data.data_dir=<folder that holds {name}/raw/> or set VAELAB_DATA_DIR."
            ) from error
        return folder
    how = " or data.download=true" if torchvision_dataset else ""
    raise VaelabError(
        f"{name} not found: looked for {name}/raw/{{{wanted}}} in {looked}; "
        f"pass data.data_dir=<folder that holds {name}/raw/> (or set VAELAB_DATA_DIR){how}."
    )
