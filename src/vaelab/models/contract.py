"""The contract every model meets (``ELBOModule``'s docstring; docs/own-model.md), checked once when a run builds the
model, each break one line naming it."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch

from vaelab.errors import VaelabError
from vaelab.models.inference import inference

if TYPE_CHECKING:
    from vaelab.models.base import ELBOModule as Model


def check_contract(model: Model) -> None:
    """One ``VaelabError`` line naming the first part of ``ELBOModule``'s contract (its docstring) that ``model``
    breaks: checked once, when a run builds it."""
    from vaelab.models.base import ELBOModule  # which imports this module

    name = type(model).__qualname__
    if not isinstance(model.num_classes, int) or isinstance(model.num_classes, bool) or model.num_classes < 0:
        raise VaelabError(f"{name}.num_classes must be an integer >= 0, got {model.num_classes!r}.")
    named = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    arguments = [p.name for p in inspect.signature(type(model).__init__).parameters.values() if p.kind in named]
    missing = [key for key in arguments[1:] if key not in model.hparams]
    if missing:
        raise VaelabError(
            f"{name}.__init__ argument {missing[0]!r} is not saved in hparams: pass the arguments on to "
            "ELBOModule.__init__ (it saves them), or call model.save_hyperparameters()."
        )
    labels = torch.zeros(2, dtype=torch.long, device=model.device) if model.num_classes else None
    for method, expected in (("encode", "images, labels=None"), ("decode_logits", "z, labels=None"),
                             ("recon_nll", "logits, images")):  # fmt: skip
        try:  # every model is called with the labels (None unless it is conditional): one signature for all
            inspect.signature(getattr(model, method)).bind(*expected.split(", "))
        except TypeError:
            signature = inspect.signature(getattr(model, method))
            raise VaelabError(f"{name}.{method} must take ({expected}); it takes {signature}.") from None
    # The default encode/decode_logits call model.encoder(images, condition) and model.decoder(z, condition).
    for method, part, inputs in (
        ("encode", "encoder", "images, condition"),
        ("decode_logits", "decoder", "z, condition"),
    ):
        module = getattr(model, part, None)
        if getattr(type(model), method) is getattr(ELBOModule, method) and module is not None:
            try:
                inspect.signature(module.forward).bind(*inputs.split(", "))
            except TypeError:
                raise VaelabError(
                    f"{name}.{part} must take ({inputs}) (the condition: None, or the one-hot labels of a "
                    f"conditional model); {type(module).__name__} takes {inspect.signature(module.forward)}: wrap "
                    f"it, or override {method}(self, {inputs.split(',')[0]}, labels=None) to call it"
                ) from None
    with inference(model):
        images = torch.full((2, 1, 28, 28), 0.5, device=model.device, dtype=model.dtype)
        encoded = model.encode(images, labels)
        pair = isinstance(encoded, tuple) and len(encoded) == 2
        if not pair or any(_shapes(t) != f"[2, {model.latent_dim}]" for t in encoded):
            raise VaelabError(
                f"{name}.encode must return (z_mean, log_var), each [batch, latent_dim={model.latent_dim}]; "
                f"got {_shapes(encoded)} for a batch of 2."
            )
        logits = model.decode_logits(encoded[0], labels)
        if _shapes(logits) != "[2, 1, 28, 28]":
            raise VaelabError(f"{name}.decode_logits must return [batch, 1, 28, 28]; got {_shapes(logits)}.")
        recon = model.recon_nll(logits, images)
        if _shapes(recon) != "[2]":
            raise VaelabError(f"{name}.recon_nll must return one value per image, [batch]; got {_shapes(recon)}.")


def _shapes(value: object) -> str:
    """The shapes in ``value`` (a tensor, or a tuple of them), for a contract error."""
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, tuple):
        return "(" + ", ".join(_shapes(item) for item in value) + ")"
    return type(value).__name__
