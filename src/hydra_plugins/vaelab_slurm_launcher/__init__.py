"""``launcher=slurm``: hydra-submitit-launcher's SLURM launcher, with a job that sbatch refuses (a GPU asked of a
CPU-only cluster, an unknown partition) as one ``error:`` line naming sbatch's reason, not submitit's traceback.
Without the ``sweeps`` extra this module (which Hydra imports at every start) defines nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
except ImportError:  # hydra-submitit-launcher is not installed: launcher=slurm says what to install
    SubmititSlurmLauncher = None

if SubmititSlurmLauncher is not None:
    from vaelab.errors import VaelabError
    from vaelab.exits import ends_on_user_error

    class SlurmLauncher(SubmititSlurmLauncher):
        @ends_on_user_error
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
            from submitit.core.utils import FailedJobError

            try:
                return super().launch(job_overrides, initial_job_idx)
            except FailedJobError as error:  # sbatch's own message: "sbatch: error: <reason>"
                reason = next((line for line in str(error).splitlines() if line.strip()), "no reason given")
                raise VaelabError(
                    f"the cluster refused the jobs ({reason.strip()}); ask for what it has through hydra.launcher "
                    "(gpus_per_node, cpus_per_task, mem_gb, partition)."
                ) from None
