"""The test loss of runs in float32 and in another precision, seeds as replicas: one row per model and precision
(n, mean, std, 95 % interval of the mean), and per model whether the two means differ beyond the seeds' noise
(Welch's t-test at 5 %, ``vaelab.sweep.replicas``) and by how much against the float32 spread.

    vaelab-train -m model=vae,conv_vae,cond_conv_vae trainer.precision=32-true,auto seed=1,2,3
    python benchmarks/precision_parity.py logs/train/multiruns/<that sweep> [more sweep folders] [--metric test/loss]
    vaelab-eval runs='[<those sweeps>]' iwae_samples=null                  # each best checkpoint tested again
    python benchmarks/precision_parity.py <those sweeps> --evaluation logs/eval/runs/<that evaluation>

Only completed runs count; each run's ``metrics.json`` says which precision it trained in (``auto`` resolved). With
``--evaluation``, a run's number is the evaluation's ``loss`` of its checkpoint (float32 whatever the precision)
instead of the run's own metric.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from vaelab.run.folder import RunFolder, RunStatus, sweep_jobs
from vaelab.sweep.replicas import differ_beyond_noise, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="multirun folders")
    parser.add_argument("--metric", default="test/loss")
    parser.add_argument("--evaluation", type=Path, help="a vaelab-eval runs=[...] folder of these runs")
    args = parser.parse_args()
    evaluated = {}  # training run folder -> the evaluation's loss of its checkpoint
    for result in args.evaluation.glob("*/metrics.json") if args.evaluation else ():
        metrics = json.loads(result.read_text())
        evaluated[RunFolder.of_checkpoint(Path(metrics["checkpoint"])).path] = metrics["loss"]
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for job in (RunFolder(path) for sweep in args.sweeps for path in sweep_jobs(sweep)):
        if job.status()[0] != RunStatus.COMPLETED:
            continue
        metrics = job.read_metrics()
        model = job.config_choices().get("model", "?")
        value = evaluated[job.path.resolve()] if args.evaluation else metrics[args.metric]
        values[(model, metrics["precision"])].append(value)
    name = "evaluation loss" if args.evaluation else args.metric
    print(f"| model | trained in | n | {name} mean | std | ci95 | vs 32-true |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for model, precision in sorted(values, key=lambda key: (key[0], key[1] != "32-true", key[1])):
        this, fp32 = spread(values[(model, precision)]), spread(values.get((model, "32-true"), []))
        if precision == "32-true":
            verdict = "-"
        else:
            beyond = differ_beyond_noise(this, fp32)
            shift = f"{this.mean - fp32.mean:+.2f} = {(this.mean - fp32.mean) / fp32.std:+.2f} fp32 std"
            verdict = f"{shift}, {'beyond' if beyond else 'within'} the seeds' noise"
        row = [f"`{model}`", precision, str(this.n), *(f"{v:.2f}" for v in (this.mean, this.std, this.ci95)), verdict]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
