"""Exact check of the local-recovery bound TV(p_t, p_hat)^2 <= I_t(A:C|B_r) and its sharper form 2 TV^2 <= I.

    python benchmarks/bound_check.py [--draws 4000] [--nodes 64] [--seed 0] [--out JSON] [--figure PNG]

p_t is the data noised to time t on the path x_t = (1 - t) x_0 + t z; the channel adds noise to the pixel A
only, y = g x_A + s z with g = (1-t-dt)/(1-t), s^2 = (t+dt)^2 - g^2 t^2 (x_A at t -> x_A at t + dt), for
dt = 1/32 (one step of a 32-step sampler) and dt = 0.1; p_hat resamples A from the Bayes posterior of the AB
marginal (see src/phasediff/info/bound.py for the formulas). Systems, on t = 0.0, 0.1, ..., 0.9:

- gmm2 (x_0 = s mu 1 + sigma g) on a 7 x 7 image, centre pixel, r = 1, 2, (mu, sigma) = (1, 1) and (0.5, 1):
  2-D Gauss-Hermite quadrature, error |Q_n - Q_{n/2}| (and, for the CMI, the distance to the closed form);
- the 4 x 4 Ising torus (J = 1, all 2^16 configurations) at T = 1.5, 2.269, 3.5, r = 1 (|B| = 8, |C| = 7):
  Monte Carlo over exact draws of (x_B, x_C), TV and CMI paired, standard errors.

A point violates a bound only if its slack is below -(2 errors + 1e-12 nats). Tightness: the max and median of
TV^2 / I and 2 TV^2 / I over the points whose I is resolved (I > 2 errors). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.info.bound import ROUNDING, gmm2_bound, ising_torus, spins_bound
from phasediff.rundir import save_json, write_atomic

TIMES = [round(0.1 * k, 1) for k in range(10)]
STEPS = [1 / 32, 0.1]
GMM2 = [(1.0, 1.0), (0.5, 1.0)]
GMM2_SIZE, GMM2_RADII = 7, [1, 2]
ISING_SIZE, ISING_TEMPERATURES = 4, [1.5, 2.269, 3.5]


def run_gmm2(nodes: int) -> list[dict]:
    points = []
    for mu, sigma in GMM2:
        model = TwoComponentMixture(GMM2_SIZE, mu, sigma)
        points += [p.to_dict() for t in TIMES for r in GMM2_RADII for p in gmm2_bound(model, t, r, STEPS, nodes)]
    return points


def run_ising(draws: int, seed: int) -> list[dict]:
    points = []
    for k, T in enumerate(ISING_TEMPERATURES):
        system = ising_torus(ISING_SIZE, T)
        rng = np.random.default_rng([seed, k])
        points += [p.to_dict() for t in TIMES for p in spins_bound(system, t, STEPS, draws, rng)]
    return points


def resolved(point: dict) -> bool:
    return point["cmi"] > 2 * point["cmi_err"] + ROUNDING


def tightness(points: list[dict]) -> dict:
    """Max and median of TV^2 / I and 2 TV^2 / I over the resolved points, and the counts of violations."""
    ratios = np.array([[p["tv2"] / p["cmi"], p["two_tv2"] / p["cmi"]] for p in points if resolved(p)])
    out = {"points": len(points), "resolved": len(ratios),
           "violations_tv2": sum(p["violation"] for p in points),
           "violations_two_tv2": sum(p["sharp_violation"] for p in points)}
    if len(ratios):
        out |= {"max_tv2_over_cmi": ratios[:, 0].max(), "median_tv2_over_cmi": float(np.median(ratios[:, 0])),
                "max_two_tv2_over_cmi": ratios[:, 1].max(), "median_two_tv2_over_cmi": float(np.median(ratios[:, 1]))}
    return out


def summarise(points: list[dict]) -> dict:
    """Overall and per (system, dt) tightness; for gmm2 the largest relative distance of the CMI to its closed form."""
    groups = {}
    for p in points:
        groups.setdefault(f"{p['system']}, dt={p['dt']:.4g}", []).append(p)
    gmm2 = [p for p in points if p["cmi_exact"] is not None and p["cmi_exact"] > 0]
    return {"all": tightness(points), "by_system": {name: tightness(group) for name, group in groups.items()},
            "gmm2_cmi_max_relative_deviation_from_exact":
                max(abs(p["cmi"] - p["cmi_exact"]) / p["cmi_exact"] for p in gmm2)}


def figure(points: list[dict], path: Path) -> None:
    """TV^2 (left) and 2 TV^2 (right) against I on log-log axes, the line y = x, error bars; resolved points only."""
    from phasediff.report.figures import plt

    shown = [p for p in points if resolved(p) and p["tv"] > 0]
    systems = list(dict.fromkeys(p["system"] for p in points))
    colours = dict(zip(systems, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    for ax, factor, label in zip(axes, (1, 2), ("TV$^2$", "2 TV$^2$")):
        for p in shown:
            marker = "o" if p["dt"] < 0.05 else "s"
            ax.errorbar(p["cmi"], factor * p["tv2"], xerr=p["cmi_err"], yerr=2 * factor * p["tv"] * p["tv_err"],
                        fmt=marker, color=colours[p["system"]], markersize=4, alpha=0.8, elinewidth=0.8)
        low = min(min(p["cmi"], p["tv2"]) for p in shown)
        line = np.array([low, 1.0])
        ax.plot(line, line, "k--", linewidth=1, label="y = x (bound)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("I_t(A:C|B_r) (nats)")
        ax.set_ylabel(f"{label} (dimensionless, compared with nats)")
        ax.set_title(f"{label} <= I ?  (circles dt = 1/32, squares dt = 0.1)", fontsize=9)
    for system, colour in colours.items():
        axes[0].plot([], [], "o", color=colour, label=system)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Local-recovery bound, exact (quadrature / enumeration); points with I resolved", fontsize=10)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000, help="Monte Carlo draws per Ising (T, t)")
    parser.add_argument("--nodes", type=int, default=64, help="Gauss-Hermite nodes per axis for gmm2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--figure", type=Path, help="write the figure (PNG) here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    points = run_gmm2(args.nodes)
    gmm2_seconds = time.perf_counter() - start
    points += run_ising(args.draws, args.seed)
    result = {
        "config": {"times": TIMES, "dt": STEPS, "gmm2": {"L": GMM2_SIZE, "radii": GMM2_RADII,
                                                       "mu_sigma": GMM2, "nodes": args.nodes},
                   "ising": {"L": ISING_SIZE, "radius": 1, "T": ISING_TEMPERATURES, "draws": args.draws,
                             "seed": args.seed}},
        "summary": summarise(points),
        "seconds": {"gmm2": gmm2_seconds, "ising": time.perf_counter() - start - gmm2_seconds},
        "points": points,
    }
    if args.out:
        save_json(args.out, result)
    if args.figure:
        figure(points, args.figure)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
