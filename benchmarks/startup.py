"""How long each command takes to answer where a user waits for one line: ``--help`` and a refused setting.

Each command runs as a fresh process (the installed console scripts of this venv), ``--repeats`` times in turn;
the table gives the median and range of the wall time, and whether torch was imported (``-X importtime``).

    python benchmarks/startup.py               # the table
    python benchmarks/startup.py --repeats 9 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "vaelab-train --help": ["vaelab-train", "--help"],
    "vaelab-eval --help": ["vaelab-eval", "--help"],
    "vaelab-export --help": ["vaelab-export", "--help"],
    "vaelab-sweeps --help": ["vaelab-sweeps", "--help"],
    "vaelab-train seed=abc": ["vaelab-train", "seed=abc"],
    "vaelab-train trainer.max_epochs=0": ["vaelab-train", "trainer.max_epochs=0"],
    "vaelab-eval ckpt_path=x.ckpt iwae_samples=0": ["vaelab-eval", "ckpt_path=x.ckpt", "iwae_samples=0"],
}


def time_command(argv: list[str], folder: Path) -> tuple[float, int, bool]:
    """Wall seconds, exit status, and whether torch was imported, of one run of ``argv`` in ``folder``."""
    command = [sys.executable, "-X", "importtime", str(BIN / argv[0]), *argv[1:]]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    imported_torch = any(line.rstrip().endswith("| torch") for line in done.stderr.splitlines())
    return seconds, done.returncode, imported_torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    facts: dict[str, tuple[int, bool]] = {}
    with tempfile.TemporaryDirectory() as folder:  # any logs/ a command made would land here
        for _ in range(args.repeats):  # commands in turn, so a drift of the machine's speed touches each alike
            for name, argv in COMMANDS.items():
                seconds, status, imported_torch = time_command(argv, Path(folder))
                times[name].append(seconds)
                facts[name] = (status, imported_torch)
    rows = {
        name: {
            "median_s": round(statistics.median(values), 2),
            "min_s": round(min(values), 2),
            "max_s": round(max(values), 2),
            "exit": facts[name][0],
            "imports_torch": facts[name][1],
        }
        for name, values in times.items()
    }
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'command':<45}{'median s':>9}{'range s':>13}{'exit':>6}  torch imported")
    for name, row in rows.items():
        spread = f"{row['min_s']:.2f}-{row['max_s']:.2f}"
        print(f"{name:<45}{row['median_s']:>9.2f}{spread:>13}{row['exit']:>6}  {row['imports_torch']}")


if __name__ == "__main__":
    main()
