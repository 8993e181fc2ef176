"""Who may write a run folder: one process at a time, never a finished run's folder by accident, and a command
that fails before it trains leaves the folder's record as it found it.

A ``Claim`` holds the folder's lock (``.vaelab.lock``, an ``fcntl`` lock the kernel drops when the process ends)
and a copy of what the command rewrites before it trains (``.hydra/``, ``config_tree.log``, the logs' lengths).
``writing`` is its life cycle around ``train``/``evaluate``: claim (unless ``hydra_callbacks.RunFolderGuard``
already did, before Hydra wrote its record), commit once the run trains, restore on a failure before that, release.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.run.files import write_atomic
from vaelab.run.folder import (
    CONFIG_RECORD,
    HYDRA_RECORD,
    JOB_RECORD,
    MLFLOW_SWEEP_RUN_FILE,
    RESUME_RECORD,
    STUDY_FILE,
    SWEEP_CONFIGS,
    SWEEP_RECORD,
    RunFolder,
    sweep_jobs,
)
from vaelab.validators import make_folder

LOCK_FILE = ".vaelab.lock"
RECORD_FILES = (CONFIG_RECORD, HYDRA_RECORD, JOB_RECORD, RESUME_RECORD, "config_tree.log")
LOG_SUFFIX = ".log"


@dataclass
class Claim:
    """This process's hold on ``folder`` (see the module docstring)."""

    folder: Path
    lock: int  # the open lock file's descriptor
    created: bool = False  # this command made the folder: a failure before training removes it again
    record: dict[str, bytes | None] = field(default_factory=dict)  # file -> content before (None: absent)
    log_sizes: dict[Path, int] = field(default_factory=dict)
    holder_before: bytes = b""  # the lock file's note of the previous owner
    pending: list[Callable[[], None]] = field(default_factory=list)  # writes that wait for the commit

    def commit(self) -> None:
        """The run is about to train: the writes that waited for it happen, and from here on its new record is the
        folder's."""
        pending, self.pending = self.pending, []
        for write in pending:
            write()
        self._forget()

    def _forget(self) -> None:
        self.record, self.log_sizes, self.created, self.pending = {}, {}, False, []

    def restore(self) -> None:
        """The command failed before it trained: remove the folder it made, or put back the record and logs kept."""
        if self.created:  # nothing but this command's own record (.hydra/, the log, the lock) is in it
            release(self.folder)
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        for name, content in self.record.items():
            path = self.folder / name
            if content is None:
                path.unlink(missing_ok=True)
            elif _read(path) != content:
                write_atomic(path, content)
        for log, size in self.log_sizes.items():
            if log.is_file() and log.stat().st_size > size:
                os.truncate(log, size)
        if self.record:  # a refused command leaves the previous owner's note, as it leaves every other file
            os.ftruncate(self.lock, 0)
            os.pwrite(self.lock, self.holder_before, 0)
        self._forget()


# This process's claims, by resolved folder: one lock per folder and process. Module state because the claim that
# hydra_callbacks.RunFolderGuard makes (before Hydra writes its record) passes to the job's ``writing``, and Hydra
# gives a callback no way to hand an object to the task function.
_held: dict[Path, Claim] = {}


def create(folder: Path, setting: str) -> None:
    """Make the run or sweep ``folder`` that ``setting`` names; one ``VaelabError`` line when it cannot be."""
    make_folder(folder, setting, f"; pass paths.log_dir=<a writable folder> or {setting}=<folder>")


def check_not_nested(folder: Path) -> None:
    """Refuse a new run or sweep folder inside a sweep folder or a run folder: evaluation and sweep summaries read a
    sweep's sub-folders as its jobs and a run folder as one run, so a folder inside either would be misread."""
    for outer in folder.resolve().parents:
        if (outer / SWEEP_RECORD).is_file():
            kind = "sweep folder"
        elif RunFolder(outer).holds_run():
            kind = "run folder"
        else:
            continue
        raise VaelabError(f"{folder} is inside the {kind} {outer}; pass a folder outside it (hydra.run.dir or "
                          "hydra.sweep.dir), so that it is read as what it is.")  # fmt: skip


def resumes(folder: Path, resume: object) -> bool:
    """True when ``resume=`` names ``folder`` itself: the one way to write again into a folder that holds a run
    (``resume=<run> hydra.run.dir=<other>`` goes on from the run into a folder that must be new)."""
    return resume is not None and Path(str(resume)).resolve() == folder.resolve()


def claim(folder: Path, resuming: bool, new_job: bool = False, command: str = "") -> Claim:
    """Make this process the one writer of ``folder`` (see the module docstring); raises ``VaelabError``.

    ``new_job``: a multirun job's folder, which Hydra has just made inside a sweep folder checked to be new.
    ``command``: the command line, noted in the lock file for a second process that finds the folder taken.
    """
    folder = folder.resolve()
    release(folder)  # this process claiming again (a test, or a resume run in-process): one lock per folder
    if not resuming and not new_job:
        check_not_nested(folder)
    if not new_job and ((folder / SWEEP_RECORD).is_file() or sweep_jobs(folder)):
        raise VaelabError(f"{folder} is a sweep folder: a run there would be read as one more job, or hide its "
                          f"jobs; pass another folder, or resume={folder} to finish that sweep.")  # fmt: skip
    created = not folder.exists()
    create(folder, "hydra.run.dir")
    descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(descriptor)
        os.close(descriptor)
        raise VaelabError(f"{folder} is in use by {holder}; wait for it to end, or pass another folder.") from None
    run = RunFolder(folder)
    if not resuming and not new_job and run.holds_run() and not run.stopped_before_first_checkpoint():
        os.close(descriptor)
        raise VaelabError(
            f"{folder} already holds a run; pass resume={folder} to continue it, or another folder "
            "(by default every run gets a new one)."
        )
    holder_before = os.pread(descriptor, 1 << 16, 0)
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(_holder(command)).encode() + b"\n", 0)
    claimed = Claim(folder, descriptor, created=created and not new_job, holder_before=holder_before)
    if not new_job:  # a sweep job's failure is recorded in its folder instead (vaelab.cli)
        claimed.record = {name: _read(folder / name) for name in RECORD_FILES}
        claimed.log_sizes = {log: log.stat().st_size for log in folder.glob(f"*{LOG_SUFFIX}") if log.is_file()}
    _held[folder] = claimed
    return claimed


@contextmanager
def writing(folder: Path, resuming: bool, owner: bool = True, command: str = "") -> Iterator[Callable[[], None]]:
    """A command's work on ``folder``, yielding ``commit`` (call it when the run is about to train): claimed unless
    this process holds it, restored on a failure before ``commit``, released if claimed here. Not the ``owner``
    (Lightning's DDP processes 1..n-1, whose rank 0 owns the folder): nothing claimed."""
    if not owner:
        yield lambda: None
        return
    held = _held.get(folder.resolve())
    claimed = held or claim(folder, resuming, command=command)
    try:
        yield claimed.commit
    except BaseException:
        claimed.restore()
        raise
    finally:
        if held is None:
            release(claimed.folder)


def on_commit(folder: Path, write: Callable[[], None]) -> None:
    """Do ``write`` when the run in ``folder`` commits (about to train), not before: a command refused until then
    writes nothing. Without this process's claim on the folder (a DDP process > 0), nothing is written."""
    claimed = _held.get(folder.resolve())
    if claimed is not None:
        claimed.pending.append(write)


def record_before(folder: Path) -> dict[str, bytes | None]:
    """The record files of ``folder`` as they were when this process claimed it (before Hydra rewrote them); {} once
    the run committed, or without a claim."""
    claimed = _held.get(folder.resolve())
    return dict(claimed.record) if claimed else {}


SWEEP_FILES = (SWEEP_CONFIGS, SWEEP_RECORD, MLFLOW_SWEEP_RUN_FILE, STUDY_FILE)  # what a multirun's start writes
# Sweep folders this process started: whether it made the folder, else which of SWEEP_FILES were there before.
_new_sweeps: dict[Path, tuple[bool, set[str]]] = {}


def start_sweep(folder: Path) -> None:
    """Make the sweep ``folder`` (``create``) and remember it, so that ``undo_unstarted_sweeps`` can take it back."""
    made = not folder.exists()
    there = set() if made else {name for name in SWEEP_FILES if (folder / name).exists()}
    create(folder, "hydra.sweep.dir")
    _new_sweeps.setdefault(folder.resolve(), (made, there))


def undo_unstarted_sweeps() -> None:
    """A multirun refused before its first job (a search's settings, a missing plugin) leaves nothing: the sweep
    folders this process started and that hold no job are removed again (only what it wrote, in a folder it did
    not make)."""
    for folder, (made, there) in list(_new_sweeps.items()):
        del _new_sweeps[folder]
        if sweep_jobs(folder) or not folder.is_dir():
            continue
        if made:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for path in (folder / name for name in SWEEP_FILES if name not in there):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def release(folder: Path) -> None:
    """Drop this process's lock on ``folder`` (the kernel drops it at exit anyway)."""
    claimed = _held.pop(folder.resolve(), None)
    if claimed is not None:
        os.close(claimed.lock)


def _holder(command: str) -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command[:500]}  # fmt: skip


def _read_holder(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"process {holder['pid']} on {holder['host']} (since {holder['started']}: {holder['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
