"""Train a VAE on MNIST. `python train.py --help` lists the config groups and options (the same as `vaelab-train`)."""

import os
from pathlib import Path

os.environ.setdefault("VAELAB_ROOT", str(Path(__file__).resolve().parent))  # logs/ and data/ beside this script

from vaelab.cli import train_command  # noqa: E402

if __name__ == "__main__":
    train_command()
