"""Rebuild a trained model from a checkpoint file alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra.utils
import torch

from vaelab.errors import VaelabError
from vaelab.models.base import ELBOModule


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's contents; a missing, unreadable or foreign file is one ``VaelabError`` line."""
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"checkpoint not found: {path}")
    try:
        # weights_only: vaelab checkpoints hold tensors and plain Python values only, nothing to execute.
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VaelabError(
            f"could not read checkpoint {path}, truncated or not a PyTorch checkpoint ({reason[:120]})"
        ) from error
    if not isinstance(checkpoint, dict) or "vaelab_model_class" not in checkpoint or "state_dict" not in checkpoint:
        raise VaelabError(f"{path} is not a vaelab checkpoint (it names no vaelab model class).")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> ELBOModule:
    """The model class the checkpoint names, built from its hyperparameters, with its weights, in eval mode."""
    class_path = checkpoint["vaelab_model_class"]
    try:
        model_class = hydra.utils.get_class(class_path)
    except Exception as error:
        raise VaelabError(f"{path} names model class {class_path}, which cannot be imported: {error}") from error
    if not issubclass(model_class, ELBOModule):
        raise VaelabError(f"{path} names {class_path}, which is not a vaelab model.")
    model = model_class(**checkpoint.get("hyper_parameters", {}))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise VaelabError(f"the weights in {path} do not fit {model_class.__name__}: {first_line}") from error
    return model.eval()


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> ELBOModule:
    """The model saved in a vaelab checkpoint, in eval mode."""
    return model_from_checkpoint(read_checkpoint(path, map_location), path)
