"""``resume=`` on the command line: before Hydra composes the config, the run's recorded overrides
(``.hydra/overrides.yaml``) are put in front of the command line's, so ``resume=<run>`` alone rebuilds what the run
trained, and an override given with it replaces the run's own; its ``hydra.*`` overrides, ``launcher``, ``resume``
and ``ckpt_path`` are not taken over, and a sweep job resumes as a single run. The run then goes on with its
recorded ``.hydra/config.yaml`` plus what the given overrides set (``with_given_overrides``; ``vaelab.cli`` applies
it), so config files edited since change nothing. ``resume=<sweep folder>`` becomes the sweep's own multirun command
into its folder, which finishes it (``finishing_sweep``). Where the run goes on from: ``vaelab.run.resume``.
"""

from __future__ import annotations

import copy
import logging
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException

from vaelab.errors import VaelabError
from vaelab.run.folder import JOB_RECORD, SWEEP_RECORD, RunFolder

if TYPE_CHECKING:  # this module runs before Hydra parses the command line: torch and Lightning load later
    from omegaconf import DictConfig

# Hydra's command-line flags that take a value: the token after them is not an override.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun"}  # fmt: skip
NOT_TAKEN_OVER = ("resume", "ckpt_path", "launcher")  # `launcher` only says how a sweep ran its jobs
MULTIRUN_FLAGS = ("-m", "--multirun")
log = logging.getLogger(__name__)


def with_search_as_multirun(argv: list[str]) -> list[str]:
    """``argv`` with ``--multirun`` added when it chooses an ``hparams_search`` config: a search is a multirun without
    ``-m``, as in lightning-hydra-template (whose configs set ``hydra.mode: MULTIRUN``, which Hydra 1.4 refuses from a
    config group). Not for a resumed run (``hydra.mode=RUN``: ``with_run_overrides`` ran first)."""
    overrides = [argv[index] for index in override_positions(argv)]
    chosen = [token.partition("=")[2] for token in overrides if token.lstrip("+").startswith("hparams_search=")]
    if not chosen or chosen[-1] in ("null", "") or "hydra.mode=RUN" in overrides:
        return argv
    return argv if any(flag in argv for flag in MULTIRUN_FLAGS) else [argv[0], "--multirun", *argv[1:]]


def with_run_overrides(argv: list[str]) -> list[str]:
    """``argv`` (``sys.argv``) with the overrides of the run that ``resume=`` names put before the command line's
    own, and that folder as Hydra's run folder (``hydra.run.dir``, unless given); ``argv`` itself without
    ``resume=``.
    Raises ``VaelabError`` for a multirun (a resume goes on in the run's own folder) and for a run folder without
    the record of its overrides (it would go on with the defaults)."""
    positions = override_positions(argv)
    if not any("resume=" in argv[index] for index in positions):  # the usual start: nothing to parse
        return argv
    tokens = {index: parsed for index in positions if (parsed := parse(argv[index])) is not None}
    given = list(tokens.values())
    at = next((index for index in reversed(tokens) if tokens[index].key_or_group == "resume"), None)
    resume = tokens[at].value() if at is not None else None
    if not isinstance(resume, str):
        return argv
    if (Path(resume) / SWEEP_RECORD).is_file():
        return finishing_sweep(argv, Path(resume), [parsed for index, parsed in tokens.items() if index != at])
    if any(flag in argv for flag in MULTIRUN_FLAGS):
        raise VaelabError(f"resume={resume} goes on with one run in its own folder: drop -m/--multirun.")
    run = RunFolder(Path(resume))
    if (run.path / JOB_RECORD).is_file():
        taken_over = run_overrides(run, given)
    elif run.last_checkpoint.is_file():
        raise VaelabError(
            f"resume={resume}: no {JOB_RECORD} there, the record of the run's settings, so it would go on with "
            f"the defaults; pass ckpt_path={run.last_checkpoint} with the run's settings instead (a new folder)."
        )
    else:
        taken_over = []  # no run there: resume_plan says so in one line
    if taken_over:
        print(f"resume={resume}: going on with the run's overrides {' '.join(taken_over)}", file=sys.stderr)
    # The run goes on in its own folder, named as the command line wrote it (quotes and escapes included).
    own_folder = f"hydra.run.dir={argv[at].split('=', 1)[1]}"
    # In place, Hydra writes no record: the run writes its own once it trains (a refused resume writes nothing).
    in_place = [] if any(o.key_or_group == "hydra.run.dir" for o in given) else [own_folder, "hydra.output_subdir=null"]
    first, after_last = positions[0], positions[-1] + 1  # argparse wants the overrides in one run of tokens
    return [*argv[:first], *taken_over, *argv[first:after_last], "hydra.mode=RUN", *in_place, *argv[after_last:]]


def finishing_sweep(argv: list[str], sweep: Path, given: list[Override]) -> list[str]:
    """``resume=<sweep folder>`` as the sweep's own multirun command into its folder (``sweep_record``), which
    finishes it: completed jobs are kept, interrupted ones go on, the rest run (``vaelab.sweep.callbacks``)."""
    task, hydra = sweep_record(sweep)
    if any(o.key_or_group.split(".")[0] != "hydra" for o in given):
        extra = " ".join(o.input_line or o.key_or_group for o in given if o.key_or_group.split(".")[0] != "hydra")
        raise VaelabError(f"resume={sweep} finishes the sweep with its own settings; drop {extra} (a sweep with "
                          "other settings goes in a new folder).")  # fmt: skip
    print(f"resume={sweep}: finishing the sweep {' '.join(task)}", file=sys.stderr)
    flags = [token for index, token in enumerate(argv[1:], 1) if index not in override_positions(argv)]
    kept = [line for line in hydra if line.split("=")[0] not in ("hydra.sweep.dir", "hydra.mode")]
    given_hydra = [o.input_line for o in given if o.input_line]
    return [argv[0], *[flag for flag in flags if flag not in MULTIRUN_FLAGS], "-m", *task, *kept, *given_hydra,
            f"hydra.sweep.dir={sweep}"]  # fmt: skip


def sweep_record(sweep: Path) -> tuple[list[str], list[str]]:
    """The task and hydra overrides that started the sweep in ``sweep`` (Hydra's ``multirun.yaml``)."""
    try:
        record = yaml.safe_load((sweep / SWEEP_RECORD).read_text())
        overrides = record["hydra"]["overrides"]
        task, hydra = list(overrides["task"] or []), list(overrides["hydra"] or [])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        raise VaelabError(f"{sweep / SWEEP_RECORD}: not Hydra's record of a sweep; cannot tell its settings") from None
    if not all(isinstance(line, str) for line in [*task, *hydra]):
        raise VaelabError(f"{sweep / SWEEP_RECORD}: not Hydra's record of a sweep; cannot tell its settings")
    return task, hydra


def run_overrides(run: RunFolder, given: list[Override]) -> list[str]:
    """The run's recorded overrides that the command line does not set itself (a key set twice can fail:
    ``~key`` or ``+key=`` twice), without its ``hydra.*`` ones and those in ``NOT_TAKEN_OVER``."""
    if run.unreadable_files(JOB_RECORD):
        raise VaelabError(f"{run.path / JOB_RECORD}: not a list of overrides; repeat the run's own overrides instead")
    recorded = run.overrides()
    set_here = {(o.key_or_group, o.package) for o in given if o.type != OverrideType.CHANGE}
    changed_here = {(o.key_or_group, o.package) for o in given if o.type == OverrideType.CHANGE}
    kept = []
    for line in recorded:
        override = parse(line)
        if override is None or override.key_or_group.split(".")[0].split("/")[0] == "hydra":
            continue
        key = (override.key_or_group, override.package)
        adds = override.type in (OverrideType.ADD, OverrideType.FORCE_ADD)
        # A key the run added (+key=) and the command line only changes (key=) must still be added first.
        if override.key_or_group in NOT_TAKEN_OVER or key in set_here or (key in changed_here and not adds):
            continue
        kept.append(line)
    return kept


def override_positions(argv: list[str]) -> list[int]:
    """Indexes of the override tokens of a command line (not the script, flags or flag values)."""
    positions, index = [], 1
    while index < len(argv):
        token = argv[index]
        if token.startswith("-") and not token.startswith("~"):
            index += 2 if token in FLAGS_WITH_VALUE else 1
            continue
        positions.append(index)
        index += 1
    return positions


@cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


def parse_all(lines: list[str]) -> list[Override]:
    """Overrides Hydra has accepted (a sweep's record, a composed job's), parsed with the one cached parser."""
    return _parser().parse_overrides(lines)


def is_grid(sweeper_target: object) -> bool:
    """True for Hydra's basic sweeper (a grid: its jobs are known in advance), not a search that asks for trials."""
    return str(sweeper_target or "").endswith("BasicSweeper")


def parse(line: str) -> Override | None:
    """One override, or None for text Hydra's grammar rejects (Hydra reports it when it composes)."""
    try:
        return _parser().parse_overrides([line])[0]
    except HydraException:
        return None


def with_given_overrides(recorded: DictConfig, composed: DictConfig, given: list[str],
                         packages: dict[str, str | None]) -> DictConfig:  # fmt: skip
    """The configuration a resumed run goes on with: its own record (``recorded``, the ``.hydra/config.yaml`` it
    started with), with what the overrides ``given`` now set taken from ``composed`` (today's composition of the
    run's overrides and these): a config file edited since the run started changes nothing else. ``packages``: the
    package of each config group (None: ``_global_``, whose keys cannot be told apart; refused)."""
    from omegaconf import OmegaConf

    effective = recorded.copy()
    for line in given:
        override = parse(line)
        if override is None or override.key_or_group.split(".")[0] in ("hydra", *NOT_TAKEN_OVER[1:]):
            continue
        key = override.key_or_group
        if key in packages:  # a group choice: the whole package it fills
            key = override.package or packages[key] or ""
            if not key:
                raise VaelabError(f"resume: {line} cannot change when a run goes on (the group sets keys across "
                                  "the config); give the keys you want changed instead.")  # fmt: skip
        if override.is_delete():
            parent, _, name = key.rpartition(".")
            node = OmegaConf.select(effective, parent) if parent else effective
            if node is not None and name in node:
                del node[name]
            continue
        value = copy.deepcopy(OmegaConf.select(composed, key, default=None))
        OmegaConf.update(effective, key, value, merge=False, force_add=True)
    OmegaConf.set_struct(effective, True)
    return effective
