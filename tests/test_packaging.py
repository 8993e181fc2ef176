"""Installing vaelab: a built wheel runs as a tool from any folder, ranges keep the user's torch build, and the
unified `lightning` package only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from helpers import PROJECT_ROOT, tiny_data_overrides

# A torch build vaelab was not tested with but supports, as a CUDA wheel names itself.
OTHER_TORCH = {"torch": "2.9.0+cu126", "torchvision": "0.24.0+cu126"}


def fake_distribution(site_packages: Path, name: str, version: str) -> None:
    """Just the metadata pip sees of an installed distribution."""
    info = site_packages / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


def test_pip_install_keeps_another_supported_torch(tmp_path: Path) -> None:
    """`pip install .` into an environment with another torch build installs vaelab and leaves torch alone.
    (Against the hard pins this replaced, the same check wants torch 2.14.1 and torchvision 0.29.1.)"""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    for name, version in OTHER_TORCH.items():
        fake_distribution(site_packages, name, version)
    # Every other dependency (and the build backend) is already there: this environment sees the test's own
    # packages after its own, so its torch is the other build.
    (site_packages / "test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--quiet", "--no-build-isolation",
         "--report", str(report), str(PROJECT_ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    would_install = {
        item["metadata"]["name"]: item["metadata"]["version"] for item in json.loads(report.read_text())["install"]
    }
    assert "vaelab" in would_install and not set(OTHER_TORCH) & set(would_install), would_install


def test_no_pytorch_lightning_import() -> None:
    """Everything runs on the unified `lightning` package: a `pytorch_lightning` import would split the classes
    (a callback written against `lightning.pytorch.Callback` is rejected by a `pytorch_lightning.Trainer`)."""
    import hydra_plugins.vaelab_optuna_sweeper.sweeper  # noqa: F401
    import vaelab.evaluation  # noqa: F401
    import vaelab.hydra_callbacks  # noqa: F401
    import vaelab.sweep.summary  # noqa: F401
    import vaelab.training  # noqa: F401

    assert "lightning.pytorch" in sys.modules
    assert not [name for name in sys.modules if name.startswith("pytorch_lightning")]


def venv_with_the_test_packages(folder: Path) -> Path:
    """A venv whose own site-packages come first and see this environment's packages after (vaelab's
    dependencies, not vaelab: the editable install's .pth file is not read from there); returns its bin/."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    site_packages = subprocess.check_output(
        [folder / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    (Path(site_packages) / "test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin"


def test_a_built_wheel_runs_as_a_tool_from_an_empty_folder(tmp_path: Path, tiny_mnist: Path) -> None:
    """`pip install <wheel>` (not editable) puts vaelab-train and vaelab-eval on the PATH with the configs inside
    the package; a run writes to ./logs of the folder it starts in; a user's config folder adds a model."""
    source = tmp_path / "source"  # a copy: the build's build/ folder stays out of the working tree
    shutil.copytree(PROJECT_ROOT, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv*", "logs", ".git", "*.egg-info", "__pycache__", "build"))  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=300, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("vaelab-*.whl")
    bin_dir = venv_with_the_test_packages(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300, capture_output=True)  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VAELAB_ROOT")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=empty, env=env, capture_output=True, text=True, timeout=300)

    where = run("python", "-c", "import vaelab.cli; print(vaelab.cli.__file__)")
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr  # the wheel's, not the clone's
    trained = run("vaelab-train", "debug=fast", "model=vae", "logger=csv", *tiny_data_overrides(tiny_mnist))
    assert trained.returncode == 0, trained.stderr[-3000:]
    (metrics,) = (empty / "logs" / "debug" / "train" / "runs").glob("*/metrics.json")  # a debug preset's folder
    assert json.loads(metrics.read_text())["status"] == "completed"
    evaluated = run("vaelab-eval", f"ckpt_path={metrics.parent / 'checkpoints' / 'last.ckpt'}", "iwae_samples=null",
                    "projector=false", "figures.num_points=50", "figures.grid_size=3", *tiny_data_overrides(tiny_mnist))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert len(list((empty / "logs" / "eval" / "runs").glob("*/metrics.json"))) == 1
    (tmp_path / "mine" / "model").mkdir(parents=True)  # a config folder of the user's, beside the package's
    (tmp_path / "mine" / "model" / "wide.yaml").write_text("defaults:\n  - conv_vae\n  - _self_\nhidden_dim: 64\n")
    added = run("vaelab-train", "--config-dir", str(tmp_path / "mine"), "model=wide", "--cfg", "job")
    assert added.returncode == 0 and "hidden_dim: 64" in added.stdout, added.stderr
