"""Single-window schedules with a small *global* U-Net as the cheap model, against all-global.

    python benchmarks/hybrid_cheap_global.py --cheap checkpoints/mnist/global-w8 [--data mnist] [--n 250]
        [--lows 0,0.1,0.2,0.3] [--highs 0.5,0.6,0.8,1] [--steps 32]

The hybrid's premise is that a strictly local model is enough outside a window. This measures the
alternative: the same sweep as `phasediff hybrid-sweep`, with a small U-Net (for example
`phasediff train mnist --model global --width 8 ...`) in place of the local model, so that locality and
capacity can be told apart. Prints JSON: per schedule the global steps, the Frechet distance, the paired
bias-corrected FD ratio to all-global with its 95% interval, and the speed-up by FLOPs. Networks run in bf16
where the CPU has it natively, fp32 elsewhere.
"""

from __future__ import annotations

import argparse
import json

from phasediff.denoisers.schedule import Schedule
from phasediff.diagnostics.schedules import compare_schedules, sweep_windows
from phasediff.precision import resolve_precision
from phasediff.report.samples import judge_and_reference, load_models
from phasediff.specs import parse_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cheap", required=True, help="checkpoint of the small global model")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--lows", default="0,0.1,0.2,0.3")
    parser.add_argument("--highs", default="0.5,0.6,0.8,1")
    args = parser.parse_args()
    precision = resolve_precision("auto")
    models, shape = load_models({"global": f"checkpoints/{args.data}/global", "cheap": args.cheap})
    judge, reference = judge_and_reference(args.data, None)
    windows = {"all-global": [(0.0, 1.0)], "all-cheap": []}
    windows.update({f"[{lo:g}, {hi:g}]": [(lo, hi)]
                    for lo, hi in sweep_windows(parse_list(args.lows, float), parse_list(args.highs, float))})
    plan = {name: Schedule.hybrid(w, inside="global", outside="cheap") for name, w in windows.items()}
    results, _ = compare_schedules(models, plan, judge, reference, n=args.n, shape=shape, steps=args.steps,
                                   precision=precision, baseline="all-global", keep_images=0)
    rows = [r.to_dict() for r in results]
    print(json.dumps({"data": args.data, "cheap": args.cheap, "n": args.n, "steps": args.steps,
                      "precision": precision,
                      "schedules": {r["name"]: {"schedule": r["schedule"],
                                                "global_steps": r["member_steps"].get("global", 0),
                                                "frechet": r["quality"]["frechet"],
                                                "frechet_ratio": r["frechet_ratio"],
                                                "flops_speed_up": rows[0]["flops"] / r["flops"]} for r in rows}},
                     indent=1))


if __name__ == "__main__":
    main()
