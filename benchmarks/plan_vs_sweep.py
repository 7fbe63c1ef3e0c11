"""The planner against the full single-window sweep on the same blocks: cost of the answer and images sampled.

    python benchmarks/plan_vs_sweep.py --model global=checkpoints/mnist/global \
        --model local=checkpoints/mnist/local-pos-r3 [--data mnist] [--judge CKPT] [--n 250] [--steps 32]
        [--grid 0:1:0.1] [--beta 1.15] [--cost wall|flops] [--sweep-from FILE] [--out FILE]

Runs `phasediff.diagnostics.planner.plan_schedule` (no cache), then samples every distinct plan of the
single-window sweep (`sweep_plans`: all-reference, all-cheap, every window of the reference) from the same
noise and judges it the same way. The sweep's answer is confirmed as the planner's is (`planner.confirm`: the
schedules that met the budget, cheapest first, measured again on the planner's fresh noise at its confirmation
size), so both answers are picked from noisy measurements and checked on the same fresh samples. Prints JSON:
both answers (schedule, paired FD ratio with its interval on the fresh samples, speed-ups by wall-clock and
FLOPs), the images each sampled, and cost_over_sweep (the planner's cost per image / the sweep's, by --cost;
<= 1 when the planner is at least as good, < 1 possible because the planner also tries several windows and
models per schedule) with within_10_percent. Its top-level schedule, models, reference and data make it a plan that
benchmarks/plan_check.py checks on 5,000 fresh samples. The sweep does not depend on the planner: --sweep-from
takes its section from an earlier run's JSON with the same settings (models, data, n, steps, grid, beta, cost,
precision, confirmation) instead of sampling it again; its speed-ups are then that run's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from phasediff.denoisers.schedule import build_member
from phasediff.diagnostics.planner import (
    CONFIRM_SEED,
    PlanOptions,
    Search,
    cheap_first,
    confirm,
    evaluation_times,
    make_blocks,
    plan_schedule,
    seconds_per_image,
    sweep_plans,
)
from phasediff.diagnostics.schedules import flops_per_image
from phasediff.precision import PRECISIONS, resolve_precision
from phasediff.report.samples import judge_and_reference, load_models
from phasediff.rundir import to_json, write_atomic
from phasediff.specs import parse_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH, repeated")
    parser.add_argument("--reference", default=None)
    parser.add_argument("--data", default=None, help="reference dataset (default: the first model's)")
    parser.add_argument("--judge", default=None, help="classifier checkpoint (default: the committed one)")
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--grid", default="0:1:0.1")
    parser.add_argument("--beta", type=float, default=1.15)
    parser.add_argument("--cost", default="wall", choices=("wall", "flops"), help="what both minimise (default wall)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--sweep-from", type=Path, default=None, help="reuse the sweep of this earlier JSON")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    try:
        earlier = None if args.sweep_from is None else json.loads(args.sweep_from.read_text())
    except (OSError, ValueError) as error:
        print(f"plan_vs_sweep: cannot read --sweep-from {args.sweep_from}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    checkpoints = {entry.partition("=")[0]: Path(entry.partition("=")[2]) for entry in args.model}
    models, shape = load_models(checkpoints)
    from phasediff.denoisers.checkpoint import read_info

    data = args.data or read_info(next(iter(checkpoints.values()))).get("data")
    judge, test_images = judge_and_reference(data, args.judge)
    options = PlanOptions(steps=args.steps, n=args.n, beta=args.beta, precision=resolve_precision(args.precision),
                          grid=tuple(parse_list(args.grid, float)), cost=args.cost)
    flops = {m: flops_per_image(build_member(m, models), shape) for m in models}
    seconds = seconds_per_image(models, shape, precision=options.precision)
    per = seconds if args.cost == "wall" else flops
    start = time.perf_counter()
    plan = plan_schedule(models, args.reference, shape, judge, test_images, options, flops=flops, seconds=seconds)
    plan_seconds = time.perf_counter() - start
    print(f"planner: {plan.schedule} ({plan_seconds:.0f} s); sweeping", file=sys.stderr)

    settings = {"models": {m: str(p) for m, p in checkpoints.items()}, "reference": plan.reference, "data": data,
                "n": args.n, "steps": args.steps, "grid": args.grid, "beta": args.beta, "cost": args.cost,
                "precision": options.precision, "confirm_n": options.confirm_n,
                "confirm_seed": options.seed + CONFIRM_SEED}
    if earlier is None:
        sweep = run_sweep(models, shape, judge, test_images, options, flops, seconds, plan.reference, per)
    else:
        differ = [k for k, v in settings.items() if k in earlier and earlier[k] != v]
        if differ:
            print(f"plan_vs_sweep: {args.sweep_from} was run with other {', '.join(differ)}", file=sys.stderr)
            raise SystemExit(2)
        sweep = earlier["sweep"]
    speedup = f"speedup_{args.cost}"
    cost_over_sweep = sweep[speedup] / getattr(plan, speedup)  # cost per image, planner's / sweep's
    report = {
        **settings, "schedule": plan.schedule, "blocks": len(plan.blocks), "seconds_per_image": seconds,
        "flops_per_image": flops,
        "planner": {"schedule": plan.schedule, "fd_ratio": plan.fd_ratio, "interval": plan.fd_ratio_interval,
                    "confirmed": plan.confirmed, "search_fd_ratio": plan.search_fd_ratio,
                    "rejected": len(plan.rejected), "speedup_wall": plan.speedup_wall,
                    "speedup_flops": plan.speedup_flops, "images_sampled": plan.images_sampled,
                    "seconds": plan_seconds, "evaluations": [m.to_dict() for m in plan.evaluations]},
        "sweep": sweep, "sweep_from": None if args.sweep_from is None else str(args.sweep_from),
        "cost_over_sweep": cost_over_sweep, "within_10_percent": cost_over_sweep <= 1.10,
        "images_over_sweep": plan.images_sampled / sweep["images_sampled"]}
    text = to_json(report, indent=1)
    if args.out is not None:
        write_atomic(args.out, lambda tmp: tmp.write_text(text + "\n"))
    print(text)


def run_sweep(models, shape, judge, test_images, options: PlanOptions, flops, seconds, reference, per) -> dict:
    """Every plan of the single-window sweep on the planner's noise, its best confirmed on the planner's fresh
    noise (cheapest first, with room for the whole bisection)."""
    blocks = make_blocks(options.grid, evaluation_times(options.steps, options.method))
    plans = sorted(sweep_plans(blocks, list(models), reference))
    base = (reference,) * len(blocks)
    search = Search(models, shape, judge, test_images, options, blocks, flops, seconds, cap=len(plans) * options.n)
    start = time.perf_counter()
    search.measure(base, "reference")
    for p in plans:
        search.measure(p, "sweep")
    passing = search.passing(base, cheap_first(blocks, per, reference))
    checked = search.confirmation((len(passing) + 1) * options.confirm_n, options.confirm_n)
    best, rejected = confirm(checked, base, passing)
    return {"schedule": best.schedule, "fd_ratio": best.ratio["ratio"], "interval": [best.ratio["low"],
            best.ratio["high"]], "search_fd_ratio": search.measured[best.plan].ratio["ratio"], "rejected": len(rejected),
            "speedup_wall": blocks.cost(base, seconds) / blocks.cost(best.plan, seconds),
            "speedup_flops": blocks.cost(base, flops) / blocks.cost(best.plan, flops),
            "images_sampled": search.images + checked.images, "schedules": len(plans),
            "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    main()
