"""What differs between the Hydra releases vaelab runs on, 1.3 and 1.4: ``version_base`` (1.3 needs it, 1.4
deprecates it) and the execution whitelist Hydra 1.4 asks of the code that calls ``instantiate`` (without one it
warns, and Hydra 1.5 will refuse): vaelab passes the targets it trusts (``vaelab.targets.trusting``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hydra
import hydra.utils

HYDRA_VERSION = tuple(int(part) for part in hydra.__version__.split(".")[:2])
CHECKS_TARGETS = hasattr(hydra.utils, "execution_whitelist")  # Hydra 1.4 and later


def version_base() -> dict[str, Any]:
    """The ``version_base`` keyword of ``hydra.main`` and ``initialize_config_dir``: 1.3's behaviour on Hydra 1.3
    (without it, 1.3 warns and falls back to 1.1's), nothing on 1.4 (whose own defaults keep 1.3's)."""
    return {"version_base": "1.3"} if HYDRA_VERSION < (1, 4) else {}


def main_options(trusted: Iterable[str]) -> dict[str, Any]:
    """The keywords of ``hydra.main``: ``version_base``, and on Hydra 1.4 the targets its callbacks, sweeper,
    launcher and logging config may name."""
    return {**version_base(), **({"execution_whitelist": list(trusted)} if CHECKS_TARGETS else {})}
