"""The planner against the full single-window sweep on the same blocks: cost of the answer and images sampled.

    python benchmarks/plan_vs_sweep.py --model global=checkpoints/mnist/global-w8 \
        --model local=checkpoints/mnist/local-pos-r3 [--data mnist] [--judge CKPT] [--n 100] [--steps 10]
        [--grid 0:1:0.1] [--beta 1.15]

Runs `phasediff.diagnostics.planner.plan_schedule` (no cache), then samples every distinct plan of the
single-window sweep (`sweep_plans`: all-reference, all-cheap, every window of the reference) from the same
noise and judges it the same way, and finds the sweep's cheapest schedule that meets the budget. Prints JSON:
both answers (schedule, paired FD ratio with its interval, speed-up by FLOPs), the images each sampled, and
cost_over_sweep (the planner's cost / the sweep's best; <= 1 when the planner is at least as good; it may be
< 1 because the planner also tries schedules with several windows).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from phasediff.denoisers.schedule import build_member
from phasediff.diagnostics.planner import (
    PlanOptions,
    Search,
    evaluation_times,
    make_blocks,
    plan_schedule,
    seconds_per_image,
    sweep_plans,
)
from phasediff.diagnostics.schedules import flops_per_image
from phasediff.precision import resolve_precision
from phasediff.report.samples import judge_and_reference, load_models
from phasediff.specs import parse_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH, repeated")
    parser.add_argument("--reference", default=None)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--judge", default=None, help="classifier checkpoint (default: the committed one)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--grid", default="0:1:0.1")
    parser.add_argument("--beta", type=float, default=1.15)
    args = parser.parse_args()
    checkpoints = {entry.partition("=")[0]: Path(entry.partition("=")[2]) for entry in args.model}
    models, shape = load_models(checkpoints)
    judge, test_images = judge_and_reference(args.data, args.judge)
    options = PlanOptions(steps=args.steps, n=args.n, beta=args.beta, precision=resolve_precision("auto"),
                          grid=tuple(parse_list(args.grid, float)))
    flops = {m: flops_per_image(build_member(m, models), shape) for m in models}
    seconds = seconds_per_image(models, shape, precision=options.precision)
    start = time.perf_counter()
    plan = plan_schedule(models, args.reference, shape, judge, test_images, options, flops=flops, seconds=seconds)
    plan_seconds = time.perf_counter() - start

    blocks = make_blocks(options.grid, evaluation_times(options.steps, options.method))
    plans = sorted(sweep_plans(blocks, list(models), plan.reference))
    search = Search(models, shape, judge, test_images, options, blocks, flops, seconds, cap=len(plans) * options.n)
    start = time.perf_counter()
    search.measure((plan.reference,) * len(blocks), "reference")
    for p in plans:
        search.measure(p, "sweep")
    sweep_seconds = time.perf_counter() - start
    base = search.measured[(plan.reference,) * len(blocks)]
    best = min((m for m in search.measured.values() if m.meets), key=lambda m: m.flops)
    print(json.dumps({
        "models": {m: str(p) for m, p in checkpoints.items()}, "data": args.data, "n": args.n, "steps": args.steps,
        "beta": args.beta, "precision": options.precision, "blocks": len(blocks),
        "planner": {"schedule": plan.schedule, "fd_ratio": plan.fd_ratio, "interval": plan.fd_ratio_interval,
                    "speedup_flops": plan.speedup_flops, "images_sampled": plan.images_sampled,
                    "seconds": plan_seconds},
        "sweep": {"schedule": best.schedule, "fd_ratio": best.ratio["ratio"],
                  "interval": [best.ratio["low"], best.ratio["high"]], "speedup_flops": base.flops / best.flops,
                  "images_sampled": search.images, "schedules": len(plans), "seconds": sweep_seconds},
        "cost_over_sweep": (base.flops / plan.speedup_flops) / best.flops,
        "images_over_sweep": plan.images_sampled / search.images}, indent=1))


if __name__ == "__main__":
    main()
