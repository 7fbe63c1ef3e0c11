"""The hybrid sampler's comparison and sweep as run directories: schedules of a global and a local model,
sampled from the same noise, judged and timed by `diagnostics.schedules.compare_schedules`.

    hybrid_comparison   the paper's schedules and ours: table, grids, results.json
    hybrid_sweep        a grid of global windows: the speed / quality Pareto front, table and figure
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from phasediff.denoisers.checkpoint import read_info
from phasediff.denoisers.compose import Window
from phasediff.denoisers.schedule import Schedule
from phasediff.diagnostics.schedules import ScheduleResult, compare_schedules, pareto_front, sweep_windows
from phasediff.diagnostics.window import DEFAULT_TOLERANCE, auto_window, cheap_radius
from phasediff.errors import PhasediffError
from phasediff.precision import resolve_precision
from phasediff.report.figures import image_grid, plt
from phasediff.report.samples import judge_and_reference, load_models
from phasediff.rundir import run_directory, save_json, save_yaml

PAPER_WINDOW = (0.2, 0.5)


def load_pair(global_checkpoint, local_checkpoint, device: str = "cpu") -> tuple[dict[str, object], tuple[int, ...]]:
    """({"global": ..., "local": ...}, image shape), checking which is global and which local."""
    models, shape = load_models({"global": global_checkpoint, "local": local_checkpoint}, device)
    if cheap_radius(models["local"]) is None:
        raise PhasediffError(f"{local_checkpoint} is not a local (or Wiener + local) model")
    if models["global"].radius is not None:
        raise PhasediffError(f"{global_checkpoint} is not a global model (it has radius {models['global'].radius})")
    return models, shape


def paper_schedules(auto: Sequence[Window]) -> dict[str, Schedule]:
    """The paper's comparison at any step count, and ours with the measured window."""
    lo, hi = PAPER_WINDOW
    windows = {"all-global": [(0.0, 1.0)], "all-local": [], "local-global-local [0.2, 0.5]": [(lo, hi)],
               "global-local-global": [(0.0, lo), (hi, 1.0)], "auto": list(auto)}
    return {name: Schedule.hybrid(w) for name, w in windows.items()}


def schedule_table(results: Sequence[ScheduleResult], baseline: str = "all-global") -> str:
    """A Markdown table: quality with intervals, time, speed-up, evaluations and FLOPs per schedule."""
    base = next((r for r in results if r.name == baseline), None)
    lines = ["| name | schedule | steps per model | FD [95%] | FD / baseline [95%] | confidence | "
             "seconds | speed-up | GFLOPs |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        q = r.quality
        steps = ", ".join(f"{member} {count}/{r.steps}" for member, count in r.member_steps.items() if count)
        ratio = "" if r.frechet_ratio is None else (f"{r.frechet_ratio['ratio']:.3f} "
                                                    f"[{r.frechet_ratio['low']:.3f}, {r.frechet_ratio['high']:.3f}]")
        speed = "" if base is None else f"{base.seconds / r.seconds:.2f}x"
        lines.append(f"| {r.name} | `{r.schedule}` | {steps} | {q.frechet:.3g} [{q.frechet_low:.3g}, "
                     f"{q.frechet_high:.3g}] | {ratio} | {q.confidence:.3f} | {r.seconds:.1f} | {speed} | "
                     f"{r.flops / 1e9:.1f} |")
    return "\n".join(lines)


def pareto_figure(results: Sequence[ScheduleResult], path: Path, highlight: Sequence[str] = ()) -> None:
    """Frechet distance (with interval) against wall-clock seconds and against GFLOPs (the latter does not
    depend on the machine's load); each panel's Pareto front joined by a line."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, cost, label, scale in ((axes[0], "seconds", "wall-clock seconds (sampling)", 1.0),
                                   (axes[1], "flops", "GFLOPs (sampling)", 1e-9)):
        for r in results:
            q, x = r.quality, getattr(r, cost) * scale
            marker = "*" if r.name in highlight else "o"
            ax.errorbar(x, q.frechet, yerr=[[q.frechet - q.frechet_low], [q.frechet_high - q.frechet]],
                        fmt=marker, color="C1" if r.name in highlight else "C0",
                        markersize=9 if marker == "*" else 4, capsize=2, alpha=0.85)
            if r.name in highlight:
                ax.annotate(r.name, (x, q.frechet), textcoords="offset points", xytext=(5, 5), fontsize=8)
        front = pareto_front(results, cost)
        ax.plot([getattr(r, cost) * scale for r in front], [r.quality.frechet for r in front], "k--", lw=1,
                label="Pareto front")
        ax.set_xlabel(label)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("Frechet distance (classifier features)")
    fig.suptitle("hybrid schedules: speed against quality", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gap_figure(gap, path: Path, tolerance: float, windows: Sequence[Window]) -> None:
    """The locality gap behind the automatic window, its interval, the tolerance and the window."""
    radius = gap.radii[0]
    t, g = np.asarray(gap.times), np.asarray(gap.gap)[:, 0]
    lo, hi = np.asarray(gap.lo)[:, 0], np.asarray(gap.hi)[:, 0]
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.fill_between(t, np.maximum(lo, g * 1e-3), hi, alpha=0.3, label="95% interval")
    ax.plot(t, g, "o-", ms=3, label=f"radius {radius} vs global")
    ax.axhline(tolerance, color="k", ls=":", label=f"tolerance {tolerance:g}")
    for a, b in windows:
        ax.axvspan(a, b, color="C1", alpha=0.15, label="global window")
    ax.set_yscale("log")
    ax.set_xlabel("t (0 = data, 1 = noise)")
    ax.set_ylabel("locality gap (per-pixel MSE)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@contextmanager
def _hybrid_run(global_checkpoint, local_checkpoint, out: Path, plans: Callable[[list[Window]], dict[str, Schedule]],
                data: str | None, judge, n: int, steps: int, seed: int, tolerance: float, batch_size: int,
                precision: str, device: str, force: bool, keep_images: int) -> Iterator[tuple]:
    """Measure the automatic window, then compare the schedules ``plans(auto window)`` in a run directory;
    yields (work folder, results, grids, summary) for the caller to write its own files into."""
    models, shape = load_pair(global_checkpoint, local_checkpoint, device)
    data, precision = data or read_info(global_checkpoint).get("data"), resolve_precision(precision)
    classifier, reference = judge_and_reference(data, judge)
    with run_directory(out, force=force) as work:
        windows, gap = auto_window(models["local"], models["global"], shape, steps=steps, tolerance=tolerance,
                                   seed=seed)
        plan = plans(windows)
        results, grids = compare_schedules(models, plan, classifier, reference, n=n, shape=shape, steps=steps,
                                           seed=seed, batch_size=batch_size, precision=precision,
                                           baseline="all-global" if "all-global" in plan else None,
                                           keep_images=keep_images, device=device)
        summary = {"global": str(global_checkpoint), "local": str(local_checkpoint), "data": data, "n": n,
                   "steps": steps, "seed": seed, "precision": precision, "threads": torch.get_num_threads(),
                   "tolerance": tolerance, "auto_window": windows, "gap": gap.to_dict()}
        gap_figure(gap, work / "gap.png", tolerance, windows)
        yield work, results, grids, summary


def hybrid_comparison(global_checkpoint, local_checkpoint, out: Path, data: str | None = None, judge=None,
                      n: int = 5000, steps: int = 32, seed: int = 0, tolerance: float = DEFAULT_TOLERANCE,
                      batch_size: int = 500, precision: str = "auto", device: str = "cpu", force: bool = False,
                      schedules: dict[str, Schedule] | None = None) -> dict:
    """The paper's schedules and the automatic window, sampled from the same noise and judged; a run folder
    with results.json, table.md, gap.png and one grid per schedule. ``precision`` auto: bf16 where native."""
    plans = (lambda windows: schedules) if schedules else paper_schedules
    with _hybrid_run(global_checkpoint, local_checkpoint, out, plans, data, judge, n, steps, seed, tolerance,
                     batch_size, precision, device, force, keep_images=64) as (work, results, grids, summary):
        summary["schedules"] = [r.to_dict() for r in results]
        save_yaml(work / "config.yaml", {k: summary[k] for k in ("global", "local", "data", "n", "steps", "seed",
                                                                  "precision", "tolerance")})
        save_json(work / "results.json", summary)
        (work / "table.md").write_text(schedule_table(results) + "\n")
        for i, (name, images) in enumerate(grids.items()):
            image_grid(images, work / f"grid-{i}.png", title=name)
    return summary


QUALITY_BAR = 1.15  # a schedule "meets the quality" when its paired FD ratio to all-global is at most this


def _against_the_bar(results: Sequence[ScheduleResult]) -> dict:
    """The fastest (and the cheapest by FLOPs) schedule whose bias-corrected paired FD ratio to all-global
    (`frechet_ratio`) is within QUALITY_BAR, and how the automatic one compares."""
    by_name = {r.name: r for r in results}
    meeting = [r for r in results if r.frechet_ratio["ratio"] <= QUALITY_BAR]
    if not meeting:  # all-global itself misses the bar only through the bias correction of a tiny sample
        raise PhasediffError(f"no schedule meets the quality bar (FD ratio <= {QUALITY_BAR}); sample more images")
    fastest = min(meeting, key=lambda r: r.seconds)
    cheapest = min(meeting, key=lambda r: r.flops)
    auto = by_name["auto"]
    return {"quality_bar": QUALITY_BAR, "fastest_meeting_bar": fastest.name, "fastest_seconds": fastest.seconds,
            "auto_meets_bar": auto.frechet_ratio["ratio"] <= QUALITY_BAR, "auto_seconds": auto.seconds,
            "auto_time_over_fastest": auto.seconds / fastest.seconds,
            "fewest_flops_meeting_bar": cheapest.name, "auto_flops_over_fewest": auto.flops / cheapest.flops}


def hybrid_sweep(global_checkpoint, local_checkpoint, out: Path, lows: Sequence[float], highs: Sequence[float],
                 data: str | None = None, judge=None, n: int = 1000, steps: int = 32, seed: int = 0,
                 tolerance: float = DEFAULT_TOLERANCE, batch_size: int = 500, precision: str = "auto",
                 device: str = "cpu", force: bool = False) -> dict:
    """Every single-window schedule [lo, hi] of the grid, plus all-global, all-local and the automatic window:
    Pareto front as table.md (all points) and pareto.png; the locality gap behind the automatic window in
    results.json and gap.png."""
    grid = sweep_windows(lows, highs)
    if not grid:
        raise PhasediffError(f"the sweep grid is empty: no window start in {list(lows)} lies below an end in "
                             f"{list(highs)}")

    def plans(windows: list[Window]) -> dict[str, Schedule]:
        plan = {"all-global": [(0.0, 1.0)], "all-local": [], "auto": windows}
        plan.update({f"[{lo:g}, {hi:g}]": [(lo, hi)] for lo, hi in grid})
        return {name: Schedule.hybrid(w) for name, w in plan.items()}

    with _hybrid_run(global_checkpoint, local_checkpoint, out, plans, data, judge, n, steps, seed, tolerance,
                     batch_size, precision, device, force, keep_images=0) as (work, results, _, summary):
        front = pareto_front(results)
        summary.update({**_against_the_bar(results), "pareto": [r.name for r in front],
                   "pareto_by_flops": [r.name for r in pareto_front(results, "flops")],
                        "schedules": [r.to_dict() for r in results]})
        save_json(work / "results.json", summary)
        (work / "table.md").write_text(schedule_table(results) + "\n\nPareto front (seconds): "
                                       + ", ".join(summary["pareto"]) + "\nPareto front (FLOPs): "
                                       + ", ".join(summary["pareto_by_flops"]) + "\n")
        pareto_figure(results, work / "pareto.png", highlight=("all-global", "all-local", "auto"))
    return summary
