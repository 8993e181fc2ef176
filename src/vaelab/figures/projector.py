"""Latent codes for TensorBoard's Projector, drawn for every ``latent_dim``: its default 3-D PCA draws nothing below
3 dims, so codes are padded with zero columns, and a bookmark, "z axes", lays the points out by the first two z dims
in 2-D. Each point has its digit and test-split index as metadata and its image as a thumbnail.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

CONFIG_FILE = "projector_config.pbtxt"
BOOKMARK = "z axes"
SPRITE_LIMIT = 8192  # the Projector's largest sprite image, in pixels per side


def bookmark(codes: torch.Tensor, labels: torch.Tensor, column: str = "digit") -> dict:
    """A Projector state: the points at (z[0], z[1]) in a 2-D view, coloured and labelled by ``column``."""
    second = codes[:, 1] if codes.shape[1] > 1 else torch.zeros(len(codes))
    return {
        "label": BOOKMARK,
        "isSelected": False,
        "dataSetDimensions": [len(codes), max(codes.shape[1], 3)],
        "selectedProjection": "pca",
        "pcaComponentDimensions": [0, 1],
        "projections": [{"pca-0": x, "pca-1": y, "pca-2": 0.0} for x, y in zip(codes[:, 0].tolist(), second.tolist())],
        "selectedColorOptionName": column,
        "forceCategoricalColoring": True,
        "selectedLabelOption": column,
        "selectedPoints": [],
        "cameraDef": None,
        # The rest of a state the Projector reads back (left at its own defaults).
        "tSNEIteration": 0, "tSNEPerplexity": 0, "tSNELearningRate": 0, "tSNEis3d": True,
        "umapIs3d": True, "umapNeighbors": 15, "umapMinDist": 0.1,
        "customSelectedSearchByMetadataOption": column,
        "customXLeftText": "", "customXLeftRegex": False, "customXRightText": "", "customXRightRegex": False,
        "customYUpText": "", "customYUpRegex": False, "customYDownText": "", "customYDownRegex": False,
    }  # fmt: skip


def write_projector(
    log_dir: Path,
    codes: torch.Tensor,
    labels: torch.Tensor,
    images: torch.Tensor,
    name: str = "test z_mean",
    class_names: Sequence[str] | None = None,
) -> None:
    """``log_dir/projector_config.pbtxt`` and ``log_dir/embedding/``: ``codes [N, D]`` (padded to 3 dims),
    metadata (the digit and index; with ``class_names``, the class's name too), ``images [N, 1, 28, 28]`` as
    thumbnails (dark on white) and the bookmark."""
    folder = log_dir / "embedding"
    folder.mkdir(parents=True, exist_ok=True)
    codes = codes.float().cpu()
    points = torch.cat([codes, torch.zeros(len(codes), max(0, 3 - codes.shape[1]))], dim=1)
    (folder / "tensors.tsv").write_text("".join("\t".join(f"{v:.6g}" for v in row) + "\n" for row in points.tolist()))
    names = [class_names[label] if class_names and label >= 0 else "" for label in labels.tolist()]
    columns = ["class", "label"] if class_names else ["digit"]
    rows = "".join("\t".join([*([names[i]] if class_names else []), str(label), str(i)]) + "\n"
                   for i, label in enumerate(labels.tolist()))  # fmt: skip
    (folder / "metadata.tsv").write_text("\t".join([*columns, "index"]) + "\n" + rows)
    (folder / "bookmarks.txt").write_text(json.dumps([bookmark(codes, labels.cpu(), columns[0])]))
    sprite = ""
    per_side = math.ceil(math.sqrt(len(images)))
    if len(images) and per_side * images.shape[-1] <= SPRITE_LIMIT:
        save_image(make_grid(1 - images.float().cpu(), nrow=per_side, padding=0), folder / "sprite.png")
        side = images.shape[-1]
        dims = f"single_image_dim: {side} single_image_dim: {side}"
        sprite = f'  sprite {{ image_path: "embedding/sprite.png" {dims} }}\n'
    (log_dir / CONFIG_FILE).write_text(
        "embeddings {\n"
        f"  tensor_name: {json.dumps(name)}\n"
        '  tensor_path: "embedding/tensors.tsv"\n'
        '  metadata_path: "embedding/metadata.tsv"\n'
        '  bookmarks_path: "embedding/bookmarks.txt"\n'
        f"{sprite}}}\n"
    )
