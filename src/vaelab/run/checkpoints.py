"""Read vaelab checkpoints safely, rebuild the model they hold from the file alone, and write them whole.

Files are read with ``weights_only=True``, and the model class a checkpoint names is imported only when trusted:
one an installed package declares in the entry-point group ``vaelab.models`` (vaelab declares its own three there,
in its ``pyproject.toml``), one in ``trusted_models``, or the class the run builds. ``AtomicCheckpointIO`` writes
every checkpoint whole or not at all.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vaelab.errors import VaelabError
from vaelab.models.base import ELBOModule
from vaelab.run.files import write_atomic
from vaelab.targets import declared_models


def trusted_names(trusted: Iterable[str] = ()) -> set[str]:
    """The dotted class names a checkpoint may name: the declared models' and ``trusted``'s."""
    return {*declared_models().values(), *map(str, trusted)}


def model_class(name: str) -> type[ELBOModule]:
    """The class a trusted dotted name refers to, imported; one line if it cannot be or is not a VAE."""
    module, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise VaelabError(
            f"cannot import the trusted model class {name} ({error}); is its module on PYTHONPATH?"
        ) from None
    if not (isinstance(found, type) and issubclass(found, ELBOModule)):
        raise VaelabError(f"{name} is not a subclass of vaelab.models.ELBOModule.")
    return found


class UntrustedModelError(VaelabError):
    """A checkpoint names a model class outside ``trusted_names``; ``hint(setting)`` says how to trust it."""

    def __init__(self, path: Path, name: str, setting: str = "trusted_models=[{name}]") -> None:
        self.path, self.name = path, name
        super().__init__(
            f"{path} names model class {name!r}, which is not a vaelab model and not trusted: if you trust that "
            f"class's code, pass {setting.format(name=name)}."
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but written into a temporary file beside the checkpoint and renamed over it.

    Lightning's own (``_atomic_save``) streams through an fsspec transaction whose temporary file lies in /tmp and
    is then copied: on a full disk that copy leaves a truncated file under the checkpoint's name.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", trusted: Iterable[str] = ()
) -> dict[str, Any]:
    """The checkpoint's contents; a missing, unreadable, foreign or hostile file is one ``VaelabError`` line, and
    so is one that names a model class outside ``trusted_names(trusted)`` (nothing is imported)."""
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        # torch's own message suggests weights_only=False, which would run the file's code: not repeated here.
        raise VaelabError(
            f"could not read checkpoint {path}: truncated, not a PyTorch checkpoint, or it holds objects other "
            f"than tensors and plain values ({type(error).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise VaelabError(f"{path} is not a vaelab checkpoint (no state_dict).")
    name = checkpoint.get("vaelab_model_class")
    if not isinstance(name, str) or name not in trusted_names(trusted):
        if not isinstance(name, str):
            raise VaelabError(f"{path} names no model class: it is not a vaelab model's checkpoint.")
        raise UntrustedModelError(path, name[:200])
    return checkpoint


def check_weights_fit(checkpoint: dict[str, Any], model: ELBOModule, path: str | Path) -> None:
    """Raise a one-line ``VaelabError`` unless the checkpoint's weights have ``model``'s names and shapes."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    found = checkpoint["state_dict"]
    if not all(isinstance(value, torch.Tensor) for value in found.values()):
        raise VaelabError(f"the state_dict of {path} holds values that are not tensors.")
    found_shapes = {name: tuple(value.shape) for name, value in found.items()}
    if found_shapes != expected:
        differing = sorted(set(expected) ^ set(found_shapes)) or sorted(
            name for name in expected if expected[name] != found_shapes[name]
        )
        raise VaelabError(
            f"the weights in {path} do not fit {type(model).__name__} as configured "
            f"(first difference: {differing[0]}); pass the model settings it was trained with."
        )


def check_resumable(checkpoint: dict[str, Any], model: ELBOModule, path: str | Path) -> None:
    """A checkpoint to resume ``model``'s training from: same model class, same weight shapes."""
    if checkpoint["vaelab_model_class"] != model.checkpoint_name():
        raise VaelabError(
            f"{path} holds a {checkpoint['vaelab_model_class'].rsplit('.', 1)[-1]}, this run builds a "
            f"{type(model).__name__}: pass the model=... it was trained with."
        )
    check_weights_fit(checkpoint, model, path)


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> ELBOModule:
    """The model class the checkpoint names, built from its hyperparameters, with its weights, in eval mode."""
    built_class = model_class(checkpoint["vaelab_model_class"])  # read_checkpoint checked that it is trusted
    hyper_parameters = checkpoint.get("hyper_parameters", {})
    if not isinstance(hyper_parameters, dict):
        raise VaelabError(f"{path}: hyper_parameters is not a mapping.")
    # Training settings are not needed to evaluate, and their ``_target_`` entries are never built from a file.
    hyper_parameters = {k: v for k, v in hyper_parameters.items() if k not in ("optimizer", "scheduler")}
    try:
        model = built_class(**hyper_parameters)
    except (TypeError, ValueError, OverflowError, MemoryError, RuntimeError) as error:  # RuntimeError: too large
        reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
        raise VaelabError(f"{path}: its hyper_parameters do not build a {built_class.__name__} ({reason}).") from None
    check_weights_fit(checkpoint, model, path)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_model(path: str | Path, map_location: str | torch.device = "cpu", trusted: Iterable[str] = ()) -> ELBOModule:
    """The model saved in a vaelab checkpoint, in eval mode (``trusted``: as ``read_checkpoint``)."""
    return model_from_checkpoint(read_checkpoint(path, map_location, trusted), path)
