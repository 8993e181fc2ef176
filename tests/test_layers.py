"""The layers of the code: the command layer reads the process's state and ends the process; nothing below it does."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "vaelab"
# vaelab.cli, vaelab.cli_tools and the hooks Hydra calls; vaelab.job reads the job's state for them, vaelab.exits ends the process.
COMMAND_LAYER = {"cli.py", "cli_tools.py", "job.py", "exits.py", "hydra_callbacks.py"}
# ONEDNN_MAX_CPU_ISA is oneDNN's own setting, which only the environment holds: machine.py reports it.
READS_ONEDNN_SETTING = {"machine.py"}
PROCESS_STATE = {"os.environ", "os.getenv", "sys.argv", "sys.exit", "HydraConfig", "exit_with_error"}


def used_names(source: Path) -> set[str]:
    """``module.attribute`` pairs and bare names a source file uses."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
    return names


def test_below_the_commands_no_module_reads_process_state_or_ends_the_process() -> None:
    checked = 0
    for source in sorted(PACKAGE.rglob("*.py")):
        relative = source.relative_to(PACKAGE)
        if str(relative) in COMMAND_LAYER or relative.parts[0] == "conf":
            continue
        found = used_names(source) & PROCESS_STATE
        if source.name in READS_ONEDNN_SETTING:
            found -= {"os.environ"}
        assert not found, f"{relative} uses {sorted(found)}: the command layer reads these and passes a Job"
        checked += 1
    assert checked > 40  # the whole package was read, not a folder that moved


def test_hydra_builds_only_the_targets_vaelab_trusts() -> None:
    """The execution whitelist vaelab gives Hydra 1.4 (on 1.3 the same list, unused): its packages, the declared
    models, trusted_models and what the run's own config names as a plain name; never a target an interpolation
    would produce (it is not the user's text)."""
    from omegaconf import OmegaConf

    from vaelab.run.overrides import with_search_as_multirun
    from vaelab.targets import TRUSTED_PACKAGES, trusted_targets

    cfg = OmegaConf.create({
        "model": {"_target_": "mymodels.TinyVAE", "optimizer": {"_target_": "torch.optim.SGD"}},
        "callbacks": {"stop": {"_target_": "helpers.StopAt"}, "gone": None, "odd": {"_target_": "${oops}"}},
        "list": [{"_target_": "pkg.InList"}], "oops": "os.system", "trusted_models": ["other.WideVAE"],
    })  # fmt: skip
    trusted = trusted_targets(cfg)
    assert trusted[: len(TRUSTED_PACKAGES)] == list(TRUSTED_PACKAGES)
    assert {"vaelab.models.vae.VAE", "mymodels.TinyVAE", "helpers.StopAt", "pkg.InList", "other.WideVAE"} <= set(
        trusted
    )
    assert "os.system" not in trusted and "${oops}" not in trusted
    assert "mymodels.TinyVAE" not in trusted_targets(None)
    # A search is a multirun without -m (hparams_search configs cannot set hydra.mode on Hydra 1.4).
    assert with_search_as_multirun(["t", "hparams_search=optuna"]) == ["t", "--multirun", "hparams_search=optuna"]
    for unchanged in (["t", "-m", "hparams_search=optuna"], ["t", "hparams_search=null"], ["t", "seed=1"],
                      ["t", "hparams_search=optuna", "hydra.mode=RUN"], ["t", "--cfg", "job", "model=vae"]):  # fmt: skip
        assert with_search_as_multirun(unchanged) == unchanged
