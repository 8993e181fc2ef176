"""The two commands that are not Hydra apps, ``vaelab-export`` and ``vaelab-sweeps``: their arguments are read
(and ``--help`` answered) before torch and matplotlib load; a user error is one ``error:`` line."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.exits import exit_with_error


def export_command(argv: list[str] | None = None) -> None:
    """``vaelab-export``: the arguments read before torch loads, so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        prog="vaelab-export",
        description="A trained model out of vaelab: its encoder and decoder as torch.export programs, which run with "
        "torch alone (encoder.pt2, decoder.pt2 and export.json).",
    )
    parser.add_argument("checkpoint", type=Path, help="a vaelab checkpoint (.ckpt)")
    parser.add_argument("--out", type=Path, help="folder for the programs (default: <run>/export, <file>_export)")
    parser.add_argument("--force", action="store_true", help="replace an export already in that folder")
    parser.add_argument("--trusted-models", default="", help="comma-separated model classes outside vaelab to trust")
    args = parser.parse_args(argv)
    from vaelab.export import export_checkpoint

    try:
        trusted = [name for name in args.trusted_models.split(",") if name]
        written = export_checkpoint(args.checkpoint, args.out, args.force, trusted)
    except VaelabError as error:
        exit_with_error(error)
    for path in written.values():
        print(path)


def sweeps_command(argv: list[str] | None = None) -> None:
    """``vaelab-sweeps``: the arguments read before the summary's imports (matplotlib, torch), so that ``--help``
    answers at once."""
    parser = argparse.ArgumentParser(
        prog="vaelab-sweeps",
        description="Summarise a multirun folder: every job's overrides, status and final metrics, sorted, as "
        "markdown, CSV and a figure; jobs that differ only by seed as one setting.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. logs/train/multiruns/<date>_<time>")
    parser.add_argument("--metric", default="val/loss", help="metric to sort by (lower is better)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        exit_with_error(f"{args.sweep_dir} is not a folder")
    from vaelab.sweep.summary import summarise

    try:
        summarise(args.sweep_dir, args.metric)
    except VaelabError as error:
        exit_with_error(error)
