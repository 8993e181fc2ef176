"""Objects built from what a user names: a config's ``_target_`` (``instantiate``, inside ``trusting``: the targets
vaelab lets Hydra build) and an optional package (``require``), each failure one ``VaelabError`` line."""

import importlib
import importlib.metadata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hydra.utils
from omegaconf import DictConfig, ListConfig

from vaelab.errors import VaelabError, user_error
from vaelab.hydra_compat import CHECKS_TARGETS

# The one registry of models: [project.entry-points."vaelab.models"] wide = "mypkg.models:WideVAE" in a package's
# pyproject.toml (vaelab's own three are declared in its own).
ENTRY_POINT_GROUP = "vaelab.models"
# The packages whose classes a config may name (``package.*``): vaelab's, Hydra's and its plugins', and those of the
# libraries vaelab builds on. A model class outside them is trusted when a package declares it (entry points
# ``vaelab.models``) or ``trusted_models`` lists it; any other class when the run's own config names it.
TRUSTED_PACKAGES = ("vaelab.*", "hydra.*", "hydra_plugins.*", "lightning.*", "pytorch_lightning.*", "torch.*",
                    "torchvision.*", "optuna.*", "logging.*")  # fmt: skip


def trusted_targets(cfg: DictConfig | None = None) -> list[str]:
    """What ``instantiate`` may build for a run of ``cfg``: ``TRUSTED_PACKAGES``, the declared models, the run's
    ``trusted_models`` and every ``_target_`` its config names. The config is the user's (their files and command
    line, as code they run); a checkpoint's record is never built from: models load through ``vaelab.run.checkpoints``,
    which imports only trusted classes."""
    named = [*config_targets(cfg), *map(str, cfg.get("trusted_models") or ())] if cfg is not None else []
    return list(dict.fromkeys([*TRUSTED_PACKAGES, *declared_models().values(), *named]))


def declared_models() -> dict[str, str]:
    """The models installed packages declare (vaelab's included): entry-point name -> dotted class path, as
    ``ELBOModule.checkpoint_name`` writes it into a checkpoint."""
    points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {point.name: point.value.replace(":", ".") for point in points}


def config_targets(config: Any) -> Iterator[str]:
    """Every ``_target_`` that ``config`` names as a plain dotted name (interpolations are not read)."""
    if isinstance(config, DictConfig):
        for key in config.keys():
            node = config._get_node(key)
            if key == "_target_" and not node._is_interpolation() and isinstance(node._value(), str):
                yield node._value()
            elif isinstance(node, (DictConfig, ListConfig)):
                yield from config_targets(node)
    elif isinstance(config, ListConfig):
        for index in range(len(config)):
            node = config._get_node(index)
            if isinstance(node, (DictConfig, ListConfig)):
                yield from config_targets(node)


@contextmanager
def trusting(cfg: DictConfig | None) -> Iterator[None]:
    """``instantiate`` inside builds ``trusted_targets(cfg)`` only, on Hydra 1.4; on 1.3, which checks nothing, the
    list is not even made (no entry-point scan or config walk at each run's start)."""
    if not CHECKS_TARGETS:
        yield
        return
    with hydra.utils.execution_whitelist(trusted_targets(cfg)):
        yield


def require(module: str, extra: str, purpose: str) -> Any:
    """The optional ``module``, imported; a ``VaelabError`` naming the extra that installs it when it is missing (a
    plain ``pip install vaelab`` has none of them)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise VaelabError(f"{purpose} needs {module}, which is not installed: pip install 'vaelab[{extra}]'") from None


def instantiate(config: Any, key: str | None = None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, with a ``VaelabError`` a class raises (a value it checks) raised as itself,
    not wrapped in Hydra's ``InstantiationException``: ``train(cfg)`` and ``evaluate(cfg)`` raise typed errors.
    With ``key`` (the setting that holds ``config``), any other failure is one ``VaelabError`` naming it."""
    try:
        return hydra.utils.instantiate(config, **kwargs)
    except Exception as error:
        cause = user_error(error)
        if cause is not None:
            raise cause from None
        if key is None:
            raise
        reason = (str(error.__cause__ or error).splitlines() or [type(error).__name__])[0]
        raise VaelabError(f"{key}: cannot build {config.get('_target_')!r} ({reason})") from None
