"""Acceptance validation of the neural CMI estimator against exact ground truth.

    python benchmarks/neural_cmi_validation.py [--cases grf,gmm,gmm2] [--n 60000] [--epochs 4] [--budget S]
        [--specialise STEPS [--chain]] [--everywhere] [--precision fp32|bf16|auto] [--net K=V,...] [--t 0.1,0.2]
        [--cache DIR]

Each model's samples are written to an .npz file and read back as a user dataset, so the estimator knows
nothing but the samples. grf:L=27,ell=3 (closed form) and the MNIST-fitted mixture
gmm:data=mnist,crop=27,k=10,rank=8 (exact log-densities, Monte Carlo with --mc samples) are compared on
t = 0.1..0.9, r = 1, 2, 4, 8, and so is gmm-fashion, gmm:data=fashion-mnist,crop=27,k=10,rank=8, a mixture the
estimator was not developed on: a point is within tolerance when |estimate - exact| <= max(0.005, 0.15 exact),
and passes when it is, or when the estimator reports it as a lower bound and it is no more than that tolerance
above the exact value; it is covered when the exact value (within two of its Monte Carlo standard errors) lies
in the reported interval (an upper limit for points below the resolution, open above for lower bounds); the
plain bootstrap coverage of the resolved points is reported too. Each point also carries the excess of the estimator's cross-entropies over the
exact conditional entropies H_t(A|B_r) and H_t(A|BC) on the same held-out images and noise
(``excess_local``, ``excess_global``): the CMI errs by their difference, and their sizes say where.
gmm2:L=27 checks the peak time of the r = 1 curve (a parabola through the grid maximum and its
neighbours) against the closed form's, on t = 0.55..0.85 in steps of 0.025. A --t subset of a chained run
fills --cache with the links from the largest t down, so a long check can be run in parts; only the full
grids pass. Prints JSON (and one line per model on stderr as it finishes). Under ``torchrun`` the estimator trains
data-parallel and the first process prints.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from phasediff.data.registry import load_dataset, load_model
from phasediff.info.cmi import flat_partitions, measure_cmi
from phasediff.info.exact import exact_entropies
from phasediff.info.neural import VALIDATED_EPOCHS, VALIDATED_SPECIALISE, held_out_draw, settings_with
from phasediff.info.neural_net import NetConfig
from phasediff.info.neural_train import TRAIN_NODES, leave_world, world
from phasediff.precision import PRECISIONS, resolve_precision
from phasediff.regions import tripartition
from phasediff.rundir import to_json

SPECS = {"grf": "grf:L=27,ell=3", "gmm": "gmm:data=mnist,crop=27,k=10,rank=8", "gmm2": "gmm2:L=27",
         "gmm-fashion": "gmm:data=fashion-mnist,crop=27,k=10,rank=8"}
TIMES = [round(0.1 * k, 1) for k in range(1, 10)]
RADII = [1, 2, 4, 8]
PEAK_TIMES = [round(0.55 + 0.025 * k, 3) for k in range(13)]
ABS_TOL, REL_TOL = 0.005, 0.15


def user_file(spec: str, n: int, folder: Path, seed: int):
    """The model of ``spec`` and its n samples written to, and read back from, an .npz file."""
    model = load_model(spec)
    images, _ = model.sample(n, np.random.default_rng([seed, 99]))
    path = folder / (spec.replace(":", "-").replace(",", "-").replace("=", "") + ".npz")
    np.savez(path, images=np.asarray(images, dtype=np.float32))
    return model, load_dataset(str(path))


def parabola_peak(ts, values) -> float:
    """Vertex of the parabola through the grid maximum and its two neighbours (the grid point at an edge)."""
    k = int(np.argmax(values))
    if k == 0 or k == len(values) - 1:
        return float(ts[k])
    a, b, _ = np.polyfit(ts[k - 1: k + 2], values[k - 1: k + 2], 2)
    return float(-b / (2 * a)) if a < 0 else float(ts[k])


def grid_case(name: str, data, model, settings, mc: int, seed: int, times=TIMES) -> dict:
    start = time.perf_counter()
    result = measure_cmi(data, times, RADII, estimator="neural", neural=settings, seed=seed)
    wall = time.perf_counter() - start
    exact = measure_cmi(model, times, RADII, estimator="exact", n_samples=mc, seed=seed + 7)
    low, high, boot_low, boot_high, unresolved, bound, ce, ce_global = (np.asarray(result.details[k]) for k in (
        "interval_low", "interval_high", "bootstrap_low", "bootstrap_high", "below_resolution", "lower_bound",
        "cross_entropy", "cross_entropy_global"))
    parts = flat_partitions(model.shape, [tripartition(model.shape[1:], r) for r in RADII])
    pairs = [(a, b) for a, b, _ in parts] + [(parts[0][0], parts[0][1] | parts[0][2])]
    entropy, _ = exact_entropies(model, times, pairs, samples=held_out_draw(data.images, settings, seed),
                                 target_nodes=TRAIN_NODES)
    points = []
    for i, t in enumerate(times):
        for j, r in enumerate(RADII):
            est, ex = float(result.cmi[i, j]), float(exact.cmi[i, j])
            slack = 0.0 if exact.stderr is None else 2 * float(exact.stderr[i, j])
            tolerance = max(ABS_TOL, REL_TOL * abs(ex))
            within = abs(est - ex) <= tolerance
            points.append({
                "t": t, "r": r, "estimate": est, "stderr": float(result.stderr[i, j]),
                "interval": [float(low[i, j]), float(high[i, j])], "exact": ex,
                "exact_stderr": None if exact.stderr is None else float(exact.stderr[i, j]),
                "within_tolerance": within, "lower_bound": bool(bound[i, j]),
                "passes": within or bool(bound[i, j] and est <= ex + tolerance),
                "covered": bool(low[i, j] - slack <= ex <= high[i, j] + slack), "resolved": not unresolved[i, j],
                "bootstrap_covered": bool(boot_low[i, j] - slack <= ex <= boot_high[i, j] + slack),
                "excess_local": float(ce[i, j] - entropy[i, j]), "excess_global": float(ce_global[i] - entropy[i, -1]),
            })
    within = np.mean([p["within_tolerance"] for p in points])
    passing = np.mean([p["passes"] for p in points])
    coverage = np.mean([p["covered"] for p in points])
    resolved = [p["bootstrap_covered"] for p in points if p["resolved"]]
    return {"spec": SPECS[name], "images": len(data), "points": points, "fraction_within_tolerance": within,
            "fraction_passing": passing, "lower_bounds": int(sum(p["lower_bound"] for p in points)),
            "coverage": coverage, "lower_bound_rule": result.details["lower_bound_rule"],
            "resolved_points": len(resolved), "bootstrap_coverage_of_resolved": np.mean(resolved) if resolved else None,
            "passed": bool(passing == 1.0 and coverage >= 0.8 and list(times) == TIMES), "wall_seconds": wall,
            "training": result.details["training"], "specialised": result.details["specialised"],
            "mutual_information_A_BC": result.details["mutual_information_A_BC"]}


def peak_case(data, model, settings, seed: int, times=PEAK_TIMES) -> dict:
    start = time.perf_counter()
    result = measure_cmi(data, times, [1], estimator="neural", neural=settings, seed=seed)
    wall = time.perf_counter() - start
    fine = np.linspace(0.5, 0.95, 451)
    exact_curve = measure_cmi(model, fine, [1], estimator="exact").cmi[:, 0]
    exact_peak = float(fine[np.argmax(exact_curve)])
    estimate = np.asarray(result.cmi[:, 0])
    peak = parabola_peak(np.asarray(times), estimate)
    return {"spec": SPECS["gmm2"], "images": len(data), "t": list(times), "estimate": estimate,
            "stderr": result.stderr[:, 0], "exact": measure_cmi(model, times, [1], estimator="exact").cmi[:, 0],
            "peak_estimate": peak, "peak_exact": exact_peak, "full_grid": list(times) == PEAK_TIMES,
            "passed": list(times) == PEAK_TIMES and abs(peak - exact_peak) <= 0.05,
            "wall_seconds": wall, "training": result.details["training"], "specialised": result.details["specialised"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="grf,gmm,gmm2", help=f"any of {', '.join(SPECS)}")
    parser.add_argument("--n", type=int, default=60_000, help="samples written to each .npz file")
    parser.add_argument("--mc", type=int, default=40_000, help="Monte Carlo samples of the exact gmm value")
    parser.add_argument("--epochs", type=float, default=VALIDATED_EPOCHS)
    parser.add_argument("--budget", type=float, default=None, help="training seconds per network")
    parser.add_argument("--specialise", type=int, default=VALIDATED_SPECIALISE, help="steps of further training "
                        f"at each t alone (default {VALIDATED_SPECIALISE}, `phasediff cmi`'s; 0: amortised only)")
    parser.add_argument("--chain", action=argparse.BooleanOptionalAction, default=True,
                        help="specialise from the largest t down, chained (default: on, as `phasediff cmi`)")
    parser.add_argument("--everywhere", action="store_true", help="specialise at every t < 1, as "
                        "--specialise-everywhere (default: only where it can change the report)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="of the training passes (default "
                        "auto, as `phasediff cmi`)")
    parser.add_argument("--net", default="", help="network sizes, e.g. blocks=0,width=128 or pool=1")
    parser.add_argument("--t", default=None,
                        help="times to measure (default: grf and gmm 0.1..0.9, gmm2 0.55..0.85 in steps of 0.025; "
                             "the acceptance checks need all, a subset fills --cache for a later full run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder for the trained networks, so that a rerun retrains only what changed")
    args = parser.parse_args()
    unknown = sorted(set(args.cases.split(",")) - SPECS.keys())
    if unknown:
        parser.error(f"unknown case {unknown[0]!r} (choose from {', '.join(SPECS)})")
    args.precision = resolve_precision(args.precision)
    sizes = {k: type(getattr(NetConfig(), k))(v) for k, v in (kv.split("=") for kv in args.net.split(",") if kv)}
    settings = settings_with(epochs=args.epochs, budget=args.budget, specialise=args.specialise,
                             specialise_chain=args.chain, specialise_everywhere=args.everywhere or None,
                             precision=args.precision, net=NetConfig(**sizes), cache=args.cache)
    report = {"settings": {"n": args.n, "mc": args.mc, "train": settings.train.to_dict(),
                           "net": settings.net.to_dict(), "everywhere": args.everywhere}}
    rank, _ = world()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases.split(","):
            model, data = user_file(SPECS[name], args.n, Path(folder), args.seed)
            default = PEAK_TIMES if name == "gmm2" else TIMES
            times = default if args.t is None else [float(t) for t in args.t.split(",")]
            if name == "gmm2":
                report[name] = peak_case(data, model, settings, args.seed, times)
            else:
                report[name] = grid_case(name, data, model, settings, args.mc, args.seed, times)
            if rank == 0:
                print(to_json(report[name], indent=None), file=sys.stderr)
    if rank == 0:
        print(to_json(report, indent=1))
    leave_world()


if __name__ == "__main__":
    main()
