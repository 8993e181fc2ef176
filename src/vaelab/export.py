"""A trained model out of vaelab: its encoder and decoder as ``torch.export`` programs, which run with torch alone.

    vaelab-export <checkpoint> [--out <folder>] [--trusted-models mymodels.WideVAE,...]

writes ``encoder.pt2`` (``images [B, 1, 28, 28], labels [B] -> (z_mean, log_var)``), ``decoder.pt2``
(``z [B, latent_dim], labels [B] -> pixel means [B, 1, 28, 28]``; ``decode``, what the figures draw) and
``export.json`` (the model's class, latent size and classes). Any batch size; the labels are ignored by a model
that is not conditional. Load one with ``torch.export.load(path).module()``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim, export

from vaelab.errors import VaelabError, exit_with_error
from vaelab.models.base import ELBOModule
from vaelab.run.checkpoints import load_model
from vaelab.run.folder import RunFolder


class Encoder(nn.Module):
    def __init__(self, model: ELBOModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(images, labels)


class Decoder(nn.Module):
    def __init__(self, model: ELBOModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z, labels)


def export_model(model: ELBOModule, folder: Path) -> dict[str, Path]:
    """Write ``model``'s encoder and decoder programs and ``export.json`` into ``folder``; returns their paths."""
    model = model.cpu().float().eval().to(memory_format=torch.contiguous_format)
    folder.mkdir(parents=True, exist_ok=True)
    batch = Dim("batch", min=1)
    labels = torch.zeros(2, dtype=torch.long)
    inputs = {
        "encoder": (Encoder(model), (torch.zeros(2, 1, 28, 28), labels), {"images": {0: batch}, "labels": {0: batch}}),
        "decoder": (
            Decoder(model),
            (torch.zeros(2, model.latent_dim), labels),
            {"z": {0: batch}, "labels": {0: batch}},
        ),
    }
    written = {}
    with torch.no_grad():
        for name, (module, example, dynamic) in inputs.items():
            written[name] = folder / f"{name}.pt2"
            torch.export.save(export(module, example, dynamic_shapes=dynamic), written[name])
    written["description"] = folder / "export.json"
    description = {"model_class": model.checkpoint_name(), "latent_dim": model.latent_dim,
                   "num_classes": model.num_classes, "image_shape": [1, 28, 28]}  # fmt: skip
    written["description"].write_text(json.dumps(description, indent=2) + "\n")
    return written


def main(argv: list[str] | None = None) -> None:
    """``vaelab-export``: the command line of ``export_model`` (one ``error:`` line and exit 1 for a bad input)."""
    parser = argparse.ArgumentParser(prog="vaelab-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a vaelab checkpoint (.ckpt)")
    parser.add_argument("--out", type=Path, help="folder for the programs (default: <run>/export, <file>_export)")
    parser.add_argument("--trusted-models", default="", help="comma-separated model classes outside vaelab to trust")
    args = parser.parse_args(argv)
    trusted = [name for name in args.trusted_models.split(",") if name]
    try:
        model = load_model(args.checkpoint, trusted=trusted)  # trusted_models in the message: --trusted-models here
    except VaelabError as error:
        exit_with_error(error)
    run = RunFolder.of_checkpoint(args.checkpoint)
    folder = args.out or (run.path / "export" if run else args.checkpoint.with_name(f"{args.checkpoint.stem}_export"))
    for path in export_model(model, folder).values():
        print(path)


if __name__ == "__main__":
    main()
