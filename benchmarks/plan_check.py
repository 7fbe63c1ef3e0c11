"""A plan checked afresh: its schedule against all-reference on new noise, judged by the committed classifier.

    python benchmarks/plan_check.py --plan docs/data/plan-mnist-4models.json [--n 5000] [--seed 1]
        [--steps 32] [--precision auto] [--rounds 5] [--out FILE]

Reads the plan (`phasediff plan --out`: schedule, models, reference, data), samples both schedules from the same
noise (`diagnostics.schedules.compare_schedules`) and prints JSON: the paired FD ratio to all-reference with its
95% interval, the sampling seconds of each in this process (so the wall-clock speed-up, exposed to the machine's
drift between the two runs), the speed-up timed with the two schedules interleaved batch by batch
(`interleaved_seconds`, the robust one) and their FLOPs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from phasediff.denoisers.schedule import Schedule
from phasediff.diagnostics.schedules import compare_schedules, interleaved_seconds
from phasediff.precision import PRECISIONS, resolve_precision
from phasediff.report.samples import judge_and_reference, load_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1, help="new noise: the planner samples with seed 0")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds of one batch each")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    schedule = Schedule.parse(plan["schedule"])
    models, shape = load_models({name: Path(plan["models"][name]) for name in schedule.models() + [plan["reference"]]})
    judge, reference = judge_and_reference(plan["data"])
    precision = resolve_precision(args.precision)
    start = time.perf_counter()
    schedules = {"all-reference": Schedule.parse(plan["reference"]), "plan": schedule}
    results, _ = compare_schedules(models, schedules, judge,
                                   reference, n=args.n, shape=shape, steps=args.steps, seed=args.seed,
                                   precision=precision, baseline="all-reference",
                                   keep_images=0)
    base, mine = results
    timed = interleaved_seconds(models, schedules, shape, steps=args.steps, rounds=args.rounds,
                                precision=precision)
    report = {"schedule": plan["schedule"], "n": args.n, "seed": args.seed, "steps": args.steps,
              "fd_ratio": mine.frechet_ratio, "speedup_wall": base.seconds / mine.seconds,
              "speedup_wall_interleaved": timed["all-reference"] / timed["plan"], "seconds_per_image": timed,
              "speedup_flops": base.flops / mine.flops, "wall_seconds": time.perf_counter() - start,
              "results": [r.to_dict() for r in results]}
    text = json.dumps(report, indent=1, default=float)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
