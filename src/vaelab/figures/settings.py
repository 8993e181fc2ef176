"""The standard figures' names and settings, checked without torch or matplotlib (the commands check a config
before importing either); ``vaelab.figures.model`` draws them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from vaelab.errors import VaelabError
from vaelab.validators import check_number

FIGURES = ("latent_scatter", "latent_grid", "centre_decode", "reconstructions", "interpolation", "samples")
TRAINING_FIGURES = ("latent_scatter", "latent_grid", "centre_decode")
ENCODED = {"latent_scatter", "latent_grid"}  # drawn from the z_mean of the images
FROM_IMAGES = ENCODED | {"reconstructions", "interpolation"}  # the others need the model only


def check_figure_names(names: Sequence[str], key: str = "figures") -> None:
    """Every name is one of ``FIGURES``; else one line naming the unknown ones and the choices."""
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        raise VaelabError(f"{key}: unknown figures {unknown}; choose from {', '.join(FIGURES)}")


@dataclass
class FigureSettings:
    """``num_points``: images the scatter and grid encode; ``grid_size``: points per grid axis; ``digits``: the
    classes a conditional model draws a grid for (None: all); ``interpolation_steps``: decodes per line;
    ``class_names``: the data set's (None: "digit <n>")."""

    num_points: int = 2000
    grid_size: int = 20
    digits: Sequence[int] | None = None
    interpolation_steps: int = 10
    class_names: Sequence[str] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], key: str, **extra: Any) -> FigureSettings:
        """The settings of a config mapping (eval.yaml's ``figures``), checked; an unknown key is one line too."""
        unknown = sorted(set(config) - {field.name for field in fields(cls)})
        if unknown:
            raise VaelabError(
                f"{key}.{unknown[0]} is not a figure setting; the settings: "
                f"{', '.join(field.name for field in fields(cls) if field.name != 'class_names')}"
            )
        settings = cls(**config, **extra)
        settings.check(key)
        return settings

    def check(self, key: str, num_classes: int = 0) -> None:
        """One ``VaelabError`` line naming ``<key>.<setting>`` for a value no figure can be drawn with (``digits``
        checked against a conditional model's ``num_classes`` when given)."""
        for name in ("num_points", "grid_size", "interpolation_steps"):
            check_number(f"{key}.{name}", getattr(self, name), minimum=1, integer=True)
        if self.digits is not None and (isinstance(self.digits, str) or not isinstance(self.digits, Sequence)):
            raise VaelabError(f"{key}.digits must be a list of classes (or null for all), got {self.digits!r}.")
        for digit in self.digits or ():
            check_number(
                f"{key}.digits", digit, minimum=0, integer=True, maximum=num_classes - 1 if num_classes else None
            )

    def title(self, label: int) -> str:
        """How figures name class ``label``."""
        if label < 0:
            return "unlabeled"
        return self.class_names[label] if self.class_names else f"digit {label}"
