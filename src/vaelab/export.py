"""A trained model out of vaelab: its encoder and decoder as ``torch.export`` programs, which run with torch alone.

    vaelab-export <checkpoint> [--out <folder>] [--force] [--trusted-models mymodels.WideVAE,...]

writes ``encoder.pt2`` (``images [B, 1, 28, 28] -> (z_mean, log_var)``), ``decoder.pt2``
(``z [B, latent_dim] -> pixel means [B, 1, 28, 28]``; ``decode``, what the figures draw) and ``export.json`` (the
model's class, latent size and classes, and the checkpoint it came from). A conditional model's programs take the
labels ``[B]`` as a second argument. Any batch size. Load one with ``torch.export.load(path).module()``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim, export

from vaelab.errors import VaelabError
from vaelab.models.base import ELBOModule
from vaelab.run.checkpoints import UntrustedModelError, load_model
from vaelab.run.files import write_atomic
from vaelab.run.folder import RunFolder

DESCRIPTION_FILE = "export.json"
EXPORT_FILES = ("encoder.pt2", "decoder.pt2", DESCRIPTION_FILE)


class Encoder(nn.Module):
    def __init__(self, model: ELBOModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(images, labels)


class Decoder(nn.Module):
    def __init__(self, model: ELBOModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode(z, labels)


def export_model(model: ELBOModule, folder: Path, checkpoint: Path | None = None) -> dict[str, Path]:
    """Write ``model``'s encoder and decoder programs and ``export.json`` (naming ``checkpoint``, the file it came
    from) into ``folder``; returns their paths."""
    model = model.cpu().float().eval().to(memory_format=torch.contiguous_format)
    folder.mkdir(parents=True, exist_ok=True)
    batch = Dim("batch", min=1)
    # A conditional model's programs take the labels too; another's take the images (or z) alone.
    labels = (torch.zeros(2, dtype=torch.long),) if model.num_classes else ()
    with_labels = {"labels": {0: batch}} if model.num_classes else {}
    inputs = {
        "encoder": (Encoder(model), (torch.zeros(2, 1, 28, 28), *labels), {"images": {0: batch}, **with_labels}),
        "decoder": (Decoder(model), (torch.zeros(2, model.latent_dim), *labels), {"z": {0: batch}, **with_labels}),
    }
    written = {}
    with torch.no_grad():
        for name, (module, example, dynamic) in inputs.items():
            written[name] = folder / f"{name}.pt2"
            buffer = io.BytesIO()
            torch.export.save(export(module, example, dynamic_shapes=dynamic), buffer)
            write_atomic(written[name], buffer.getvalue())
    written["description"] = folder / DESCRIPTION_FILE
    description = {"model_class": model.checkpoint_name(), "latent_dim": model.latent_dim,
                   "num_classes": model.num_classes, "image_shape": [1, 28, 28],
                   "checkpoint": str(checkpoint.resolve()) if checkpoint else None}  # fmt: skip
    write_atomic(written["description"], json.dumps(description, indent=2) + "\n")
    return written


def check_export_folder(folder: Path, replace: bool) -> None:
    """``folder`` must be a folder (or not exist yet) and, unless ``replace``, hold no export already."""
    if folder.exists() and not folder.is_dir():
        raise VaelabError(f"--out {folder} is a file, not a folder; pass a folder for the programs.")
    previous = folder / DESCRIPTION_FILE
    if not replace and any((folder / name).exists() for name in EXPORT_FILES):
        try:
            source = json.loads(previous.read_text()).get("checkpoint") or "an unknown checkpoint"
        except (OSError, ValueError, AttributeError):
            source = "an unknown checkpoint"
        raise VaelabError(f"{folder} already holds an export (of {source}); pass --out <another folder>, or --force "
                          "to replace it.")  # fmt: skip


def export_checkpoint(checkpoint: Path, out: Path | None, force: bool, trusted: list[str]) -> dict[str, Path]:
    """``vaelab-export`` after its arguments are read (``vaelab.cli_tools.export_command``): the files written; a
    ``VaelabError`` line for a bad input or a folder that cannot be written."""
    run = RunFolder.of_checkpoint(checkpoint)
    folder = out or (run.path / "export" if run else checkpoint.with_name(f"{checkpoint.stem}_export"))
    try:
        check_export_folder(folder, force)
        model = load_model(checkpoint, trusted=trusted)
        return export_model(model, folder, checkpoint)
    except UntrustedModelError as error:
        raise UntrustedModelError(error.path, error.name, setting="--trusted-models {name}") from None
    except OSError as error:  # a folder that cannot be made or written
        raise VaelabError(f"cannot write the export into {folder}: {error.strerror or error}") from None
