"""The composed config as a tree at the start of a run (printed and kept in the run folder), run tags, and the
config flattened to the dotted keys Hydra overrides use."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from vaelab.errors import VaelabError

# The groups a reader looks for first; the rest follow in the config's order.
FIRST = ("model", "data", "trainer", "logger", "callbacks")
TAG = re.compile(r"[\w.\-/ ]+")


def config_tree(cfg: DictConfig) -> Tree:
    """One branch per top-level key, its resolved value as YAML."""
    tree = Tree("config", style="dim", guide_style="dim")
    keys = [key for key in FIRST if key in cfg] + [key for key in cfg if key not in FIRST]
    for key in keys:
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else str(value)
        branch = tree.add(str(key), style="bold", guide_style="dim")
        branch.add(Syntax(text.rstrip(), "yaml", background_color="default"))
    return tree


def print_config_tree(cfg: DictConfig, save_to: Path, show: bool = True) -> None:
    """Print the tree to the console (unless not ``show``) and write it, without colour codes, to ``save_to``. Piped
    (nohup, SLURM's output file), the lines are not cut at Rich's 80 columns."""
    tree = config_tree(cfg)
    # Off a terminal Rich assumes 80 columns and cuts longer lines: as wide as the longest value instead.
    longest = max(len(line) for line in OmegaConf.to_yaml(cfg, resolve=True).splitlines() or [""])
    console = Console()
    if show:
        (console if console.is_terminal else Console(width=max(120, longest + 16))).print(tree)
    save_to.parent.mkdir(parents=True, exist_ok=True)
    with save_to.open("w") as file:
        Console(file=file, width=max(120, longest + 16), color_system=None).print(tree)


def run_tags(tags: Any) -> list[str]:
    """``tags=[baseline,lr-sweep]`` (or one word, ``tags=baseline``) as a list of words that every logger takes:
    letters, digits, ``_ - . /`` and spaces (MLflow's rule for tag names)."""
    if tags is None:
        return []
    if isinstance(tags, str | int | float):
        tags = [tags]
    words = [str(tag).strip() if isinstance(tag, str | int | float) else "" for tag in tags]
    bad = [word for word in words if not TAG.fullmatch(word)]
    if bad or not isinstance(tags, Sequence | ListConfig):
        raise VaelabError(
            f"tags: {bad[0] if bad else tags!r} is not a word; give a list of words, e.g. tags=[baseline,lr-sweep]"
        )
    return words


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model.latent_dim": 2, ...}``: the config's leaves under the dotted keys Hydra overrides use."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat
