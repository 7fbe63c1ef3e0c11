"""The paper's MNIST heatmap with the neural estimator: I_t(A:C|B_r) for t = 0, 0.1, ..., 1 and r = 1..12,
A = the centre pixel of the 27 x 27 crop, trained from scratch (no cache), in `phasediff cmi`'s default mode.

    python benchmarks/neural_cmi_mnist.py [--spec mnist:crop=27] [--epochs 4] [--budget S] [--threads N]
        [--t 0.1,0.2] [--specialise STEPS] [--no-chain] [--everywhere] [--precision fp32|bf16|auto]

By default the validated mode is timed: a copy of the network trained further at each t where that can change
the report, chained from the largest such t down (the amortised network serves at t = 1, at the t whose
estimates are lower bounds, and where it reads far below the resolution; --everywhere specialises at every
t < 1; benchmarks/neural_cmi_validation.py measures the accuracy); --specialise 0 times the amortised network
alone.

Prints JSON: wall seconds (training and evaluation), the median half-width of the two-sided 95% intervals
(the points the estimator reports as lower bounds have intervals open above and are counted apart), the
table with its standard errors and intervals, and the training history summary. Under ``torchrun`` (one
thread per process: ``OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/neural_cmi_mnist.py``)
the estimator trains data-parallel and the first process prints.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from phasediff.data.registry import load_dataset
from phasediff.info.cmi import measure_cmi
from phasediff.info.neural import VALIDATED_EPOCHS, VALIDATED_SPECIALISE, settings_with
from phasediff.info.neural_train import leave_world, world
from phasediff.precision import PRECISIONS, resolve_precision
from phasediff.rundir import to_json

TIMES = [round(0.1 * k, 1) for k in range(11)]
RADII = list(range(1, 13))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="mnist:crop=27")
    parser.add_argument("--epochs", type=float, default=VALIDATED_EPOCHS)
    parser.add_argument("--budget", type=float, default=None, help="training seconds")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--t", default=",".join(map(str, TIMES)), help="comma-separated times")
    parser.add_argument("--specialise", type=int, default=VALIDATED_SPECIALISE, help="steps of further training "
                        f"at each t alone (default {VALIDATED_SPECIALISE}, `phasediff cmi`'s; 0: amortised only)")
    parser.add_argument("--chain", action=argparse.BooleanOptionalAction, default=True,
                        help="specialise from the largest t down, chained (default: on, as `phasediff cmi`)")
    parser.add_argument("--everywhere", action="store_true", help="specialise at every t < 1 (--specialise-everywhere)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="of the training passes (default "
                        "auto, as `phasediff cmi`)")
    args = parser.parse_args()
    args.precision = resolve_precision(args.precision)
    torch.set_num_threads(args.threads)
    times = [float(t) for t in args.t.split(",")]
    data = load_dataset(args.spec)
    settings = settings_with(epochs=args.epochs, budget=args.budget, specialise=args.specialise,
                             specialise_chain=args.chain, precision=args.precision,
                             specialise_everywhere=args.everywhere or None)
    start = time.perf_counter()
    result = measure_cmi(data, times, RADII, estimator="neural", neural=settings, seed=args.seed)
    wall = time.perf_counter() - start
    rank, processes = world()
    low, high, bound = (np.asarray(result.details[k]) for k in ("interval_low", "interval_high", "lower_bound"))
    half = 0.5 * (high - low)[~bound]
    peak = np.unravel_index(np.argmax(result.cmi), result.cmi.shape)
    report = {
        "spec": args.spec, "images": len(data), "threads": args.threads, "processes": processes, "wall_seconds": wall,
        "training_seconds": result.details["training"]["seconds"], "training": result.details["training"],
        "median_interval_half_width": float(np.median(half)) if half.size else None,
        "max_interval_half_width": float(half.max()) if half.size else None,
        "lower_bounds": int(bound.sum()), "lower_bound_rule": result.details["lower_bound_rule"],
        "peak": {"t": times[peak[0]], "r": RADII[peak[1]], "cmi": float(result.cmi[peak])},
        "specialise": args.specialise, "chain": args.chain, "everywhere": args.everywhere, "precision": args.precision,
        "specialised": result.details["specialised"],
        "t": times, "r": RADII, "cmi": np.round(result.cmi, 5).tolist(), "stderr": np.round(result.stderr, 5).tolist(),
        "interval_low": np.round(low, 5).tolist(), "interval_high": np.round(high, 5).tolist(),
        "mutual_information_A_BC": np.round(result.details["mutual_information_A_BC"], 5).tolist(),
        "network": result.details["network"],
    }
    if rank == 0:
        print(to_json(report, indent=1))
    leave_world()


if __name__ == "__main__":
    main()
