"""The hybrid sampler against all-global on MNIST and Fashion-MNIST: quality, wall-clock and FLOPs.

    python benchmarks/hybrid_comparison.py [--data mnist,fashion-mnist] [--n 5000] [--steps 32]
        [--local-name local-pos-r3] [--sweep-n 1000] [--no-sweep] [--out runs/bench-hybrid] [--threads N]

For each dataset: `phasediff hybrid` (all-global, all-local, the paper's local-global-local [0.2, 0.5] and
global-local-global, and the automatic window, all from the same noise in one process) and, unless
--no-sweep, `phasediff hybrid-sweep` over single windows. Uses the committed checkpoints
checkpoints/DATA/global and checkpoints/DATA/LOCAL_NAME. Prints JSON: per schedule the Frechet distance with
its interval, the paired FD ratio to all-global, seconds, speed-up and GFLOPs; the acceptance figures
(auto FD ratio <= 1.15, speed-up >= 2.5, auto within 10% of the fastest sweep point meeting the bar), and the
same comparison by FLOPs, which does not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from phasediff.report.hybrid import hybrid_comparison, hybrid_sweep
from phasediff.report.samples import CHECKPOINTS
from phasediff.specs import parse_list


def _schedules(summary: dict) -> dict:
    base = next(s for s in summary["schedules"] if s["name"] == "all-global")
    return {s["name"]: {"schedule": s["schedule"], "global_steps": s["member_steps"].get("global", 0),
                        "frechet": s["quality"]["frechet"],
                        "frechet_interval": [s["quality"]["frechet_low"], s["quality"]["frechet_high"]],
                        "frechet_ratio": s["frechet_ratio"], "confidence": s["quality"]["confidence"],
                        "seconds": s["seconds"], "speed_up": base["seconds"] / s["seconds"],
                        "gflops": s["flops"] / 1e9} for s in summary["schedules"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist,fashion-mnist")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--local-name", default="local-pos-r3")
    parser.add_argument("--sweep-n", type=int, default=1000)
    parser.add_argument("--lows", default="0:0.4:0.1")
    parser.add_argument("--highs", default="0.3:1:0.1")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-hybrid"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"n": args.n, "steps": args.steps, "threads": args.threads, "datasets": {}}
    for data in args.data.split(","):
        global_, local = CHECKPOINTS / data / "global", CHECKPOINTS / data / args.local_name
        summary = hybrid_comparison(global_, local, args.out / f"{data}-compare", n=args.n, steps=args.steps,
                                    force=True)
        schedules = _schedules(summary)
        auto = schedules["auto"]
        entry = {"auto_window": summary["auto_window"], "schedules": schedules,
                 "auto_frechet_ratio": auto["frechet_ratio"], "auto_speed_up": auto["speed_up"],
                 "meets_quality": auto["frechet_ratio"]["ratio"] <= 1.15, "meets_speed": auto["speed_up"] >= 2.5}
        if not args.no_sweep:
            sweep = hybrid_sweep(global_, local, args.out / f"{data}-sweep", parse_list(args.lows, float),
                                 parse_list(args.highs, float), n=args.sweep_n, steps=args.steps, force=True)
            entry["sweep"] = {k: sweep[k] for k in ("quality_bar", "fastest_meeting_bar", "fastest_seconds",
                                                    "auto_meets_bar", "auto_seconds", "auto_time_over_fastest",
                                                    "fewest_flops_meeting_bar", "auto_flops_over_fewest",
                                                    "pareto", "pareto_by_flops")}
            entry["sweep"]["n"] = args.sweep_n
        report["datasets"][data] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
