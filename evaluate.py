"""Evaluate checkpoints on the test split: `python evaluate.py ckpt_path=<file.ckpt>` or `runs=[...]` (vaelab-eval)."""

import os
from pathlib import Path

os.environ.setdefault("VAELAB_ROOT", str(Path(__file__).resolve().parent))  # logs/ and data/ beside this script

from vaelab.cli import evaluate_command  # noqa: E402

if __name__ == "__main__":
    evaluate_command()
