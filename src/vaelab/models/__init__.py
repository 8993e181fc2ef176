"""The VAE variants (``ELBOModule`` and its subclasses) and what they are built from.

The classes load on first use (PEP 562): ``vaelab.models.probability`` (the maths), ``networks`` and ``inference``
import torch only, not Lightning, which imports torchmetrics and, through it, matplotlib. These are the package's
public names, not a registry: which models a checkpoint may name is declared once, as entry points
(``vaelab.models`` in ``pyproject.toml``, read by ``vaelab.run.checkpoints``).
"""

from __future__ import annotations

import importlib
from typing import Any

_CLASSES = {
    "ELBOModule": "vaelab.models.base",
    "VAE": "vaelab.models.vae",
    "ConvVAE": "vaelab.models.conv_vae",
    "CondConvVAE": "vaelab.models.conv_vae",
}
__all__ = list(_CLASSES)


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
