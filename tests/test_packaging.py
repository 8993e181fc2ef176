"""Installing vaelab: ranges that keep the user's torch build, and the unified `lightning` package only."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from helpers import PROJECT_ROOT

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
    import vaelab.sweeps  # noqa: F401
    import vaelab.training  # noqa: F401

    assert "lightning.pytorch" in sys.modules
    assert not [name for name in sys.modules if name.startswith("pytorch_lightning")]
