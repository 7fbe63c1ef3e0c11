"""The hybrid sampler's automatic schedule, comparison and sweep: schedules of a global and a local model,
sampled from the same noise, judged and timed by `diagnostics.schedules.compare_schedules`.

    auto_schedule       the planner's cheapest schedule of the two within an FD budget, through the plan cache
    hybrid_comparison   the paper's schedules and the automatic one: table, grids, results.json
    hybrid_sweep        a grid of global windows (the exhaustive reference): the speed / quality Pareto front
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from phasediff.denoisers.checkpoint import read_info
from phasediff.denoisers.compose import Window
from phasediff.denoisers.schedule import Schedule
from phasediff.diagnostics.planner import (
    DEFAULT_BETA,
    PlanOptions,
    cached,
    plan_key,
    plan_schedule,
    plan_settings,
)
from phasediff.diagnostics.schedules import (
    ScheduleResult,
    compare_schedules,
    pareto_front,
    sweep_windows,
)
from phasediff.diagnostics.window import cheap_radius
from phasediff.errors import PhasediffError
from phasediff.precision import resolve_precision
from phasediff.report.figures import image_grid, plt
from phasediff.report.samples import judge_and_reference, judge_identity, load_models
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


@dataclass
class AutoSchedule:
    """The automatic schedule of a global and a local model (the planner's answer) and what finding it cost."""

    schedule: str
    budget: float
    fd_ratio: float  # paired, to all-global, as the planner measured it (on fresh noise when it confirmed the plan)
    speedup_flops: float
    speedup_wall: float
    cached: bool  # read from the plan cache: nothing planned in this call
    key: str  # the plan's cache key (`phasediff plan` prints it too)
    planning_seconds: float  # wall-clock spent planning in this call (0 when cached)
    planning_images: int  # images the planner sampled in this call (0 when cached)
    planned_seconds: float  # what the plan cost when it was made
    planned_images: int
    payback_images: float | None  # samples after which the plan has paid for itself; None: never (saves nothing)

    def to_dict(self) -> dict:
        return asdict(self)

    def global_windows(self) -> list[Window]:
        """Where the global model runs ([] all-local, [(0, 1)] all-global)."""
        schedule = Schedule.parse(self.schedule)
        if not schedule.pieces:
            return [(0.0, 1.0)] if schedule.default == "global" else []
        return schedule.windows("global")

    def text(self) -> str:
        """One line: the schedule, its quality and speed-up, the planning cost and the pay-off."""
        cost = (f"from the plan cache (planned once in {self.planned_seconds:.1f} s, {self.planned_images} images)"
                if self.cached else f"planned in {self.planning_seconds:.1f} s ({self.planning_images} images)")
        payback = ("never (it saves no time per image)" if self.payback_images is None
                   else f"after {math.ceil(self.payback_images):,} samples")
        return (f"auto: {self.schedule} (FD ratio to all-global {self.fd_ratio:.3f}, budget {self.budget:g}; "
                f"{self.speedup_flops:.2f}x by FLOPs, {self.speedup_wall:.2f}x by wall-clock); {cost}; the plan "
                f"pays for itself {payback}")


def auto_schedule(global_checkpoint, local_checkpoint, options: PlanOptions, data: str | None = None, judge=None,
                  cache: Path | None = None) -> AutoSchedule:
    """The cheapest schedule of the models {global, local} whose paired FD ratio to all-global meets
    ``options.beta`` (`planner.plan_schedule`), judged by ``judge`` (default: the committed classifier) against
    the test split of ``data`` (default: the global checkpoint's). Read from the plan cache ``cache`` (None: no
    cache) when it holds the plan, else planned and stored there; the key is the one `phasediff plan --model
    global=G --model local=L` computes with the same settings, so the two share one plan."""
    start = time.perf_counter()
    checkpoints = {"global": Path(global_checkpoint), "local": Path(local_checkpoint)}
    infos = {name: read_info(path) for name, path in checkpoints.items()}
    data = data or infos["global"].get("data")
    if not data:
        raise PhasediffError(f"{global_checkpoint} does not record its data, against which the planner judges")
    judge = None if judge is None else Path(judge)
    key = plan_key(plan_settings(infos, None, data, judge_identity(data, judge), options))

    def compute() -> dict:  # as `phasediff plan` stores it
        models, shape = load_pair(checkpoints["global"], checkpoints["local"], options.device)
        classifier, reference = judge_and_reference(data, judge)
        plan = plan_schedule(models, None, shape, classifier, reference, options, started=start)
        return {**plan.to_dict(), "data": data, "models": {m: str(p) for m, p in checkpoints.items()}}

    plan, hit = cached(cache, key, compute)
    if plan["reference"] != "global":
        raise PhasediffError(f"{local_checkpoint} costs more FLOPs per image than {global_checkpoint}: no schedule "
                             "of the two is cheaper than all-global")
    return AutoSchedule(
        schedule=plan["schedule"], budget=plan["beta"], fd_ratio=plan["fd_ratio"],
        speedup_flops=plan["speedup_flops"], speedup_wall=plan["speedup_wall"], cached=hit, key=key,
        planning_seconds=0.0 if hit else plan["planning_seconds"], planning_images=0 if hit else plan["images_sampled"],
        planned_seconds=plan["planning_seconds"], planned_images=plan["images_sampled"],
        payback_images=plan["payback_images"])


def paper_schedules(auto: Schedule) -> dict[str, Schedule]:
    """The paper's comparison at any step count, and the automatic schedule."""
    lo, hi = PAPER_WINDOW
    windows = {"all-global": [(0.0, 1.0)], "all-local": [], "local-global-local [0.2, 0.5]": [(lo, hi)],
               "global-local-global": [(0.0, lo), (hi, 1.0)]}
    return {**{name: Schedule.hybrid(w) for name, w in windows.items()}, "auto": auto}


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
    """A measured locality gap, its interval, a tolerance and the window where the gap exceeds it
    (`diagnostics.window.auto_window`)."""
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
def _hybrid_run(global_checkpoint, local_checkpoint, out: Path, plans: Callable[[Schedule], dict[str, Schedule]],
                data: str | None, judge, n: int, steps: int, seed: int, budget: float, plan_n: int,
                cache: Path | None, batch_size: int, precision: str, device: str, force: bool,
                keep_images: int) -> Iterator[tuple]:
    """Find the automatic schedule (`auto_schedule`), then compare the schedules ``plans(auto schedule)`` in a
    run directory; yields (work folder, results, grids, summary, the automatic schedule) for the caller to write
    its own files into."""
    models, shape = load_pair(global_checkpoint, local_checkpoint, device)
    data, precision = data or read_info(global_checkpoint).get("data"), resolve_precision(precision)
    classifier, reference = judge_and_reference(data, judge)
    options = PlanOptions(steps=steps, beta=budget, n=plan_n, seed=seed, batch_size=batch_size, precision=precision,
                          device=device)
    options.check()
    with run_directory(out, force=force) as work:
        auto = auto_schedule(global_checkpoint, local_checkpoint, options, data=data, judge=judge, cache=cache)
        plan = plans(Schedule.parse(auto.schedule))
        results, grids = compare_schedules(models, plan, classifier, reference, n=n, shape=shape, steps=steps,
                                           seed=seed, batch_size=batch_size, precision=precision,
                                           baseline="all-global" if "all-global" in plan else None,
                                           keep_images=keep_images, device=device)
        summary = {"global": str(global_checkpoint), "local": str(local_checkpoint), "data": data, "n": n,
                   "steps": steps, "seed": seed, "precision": precision, "threads": torch.get_num_threads(),
                   "budget": budget, "plan_n": plan_n, "auto": auto.to_dict(), "auto_window": auto.global_windows()}
        yield work, results, grids, summary, auto


def hybrid_comparison(global_checkpoint, local_checkpoint, out: Path, data: str | None = None, judge=None,
                      n: int = 5000, steps: int = 32, seed: int = 0, budget: float = DEFAULT_BETA,
                      plan_n: int = PlanOptions.n, cache: Path | None = None, batch_size: int = 500,
                      precision: str = "auto", device: str = "cpu", force: bool = False) -> dict:
    """The paper's schedules and the automatic one (`auto_schedule` at ``budget``, planned on ``plan_n`` images
    per schedule, through the plan cache ``cache``), sampled from the same noise and judged; a run folder with
    results.json, table.md and one grid per schedule. ``precision`` auto: bf16 where native."""
    with _hybrid_run(global_checkpoint, local_checkpoint, out, paper_schedules, data, judge, n, steps, seed, budget,
                     plan_n, cache, batch_size, precision, device, force,
                     keep_images=64) as (work, results, grids, summary, auto):
        summary["schedules"] = [r.to_dict() for r in results]
        save_yaml(work / "config.yaml", {k: summary[k] for k in ("global", "local", "data", "n", "steps", "seed",
                                                                  "precision", "budget", "plan_n")})
        save_json(work / "results.json", summary)
        (work / "table.md").write_text(schedule_table(results) + "\n\n" + auto.text() + "\n")
        for i, (name, images) in enumerate(grids.items()):
            image_grid(images, work / f"grid-{i}.png", title=name)
    return summary


def _against_the_bar(results: Sequence[ScheduleResult], bar: float) -> dict:
    """The fastest (and the cheapest by FLOPs) schedule whose bias-corrected paired FD ratio to all-global
    (`frechet_ratio`) is within ``bar``, and how the automatic one compares."""
    by_name = {r.name: r for r in results}
    meeting = [r for r in results if r.frechet_ratio["ratio"] <= bar]
    if not meeting:  # all-global itself misses the bar only through the bias correction of a tiny sample
        raise PhasediffError(f"no schedule meets the quality bar (FD ratio <= {bar:g}); sample more images")
    fastest = min(meeting, key=lambda r: r.seconds)
    cheapest = min(meeting, key=lambda r: r.flops)
    auto = by_name["auto"]
    return {"quality_bar": bar, "fastest_meeting_bar": fastest.name, "fastest_seconds": fastest.seconds,
            "auto_meets_bar": auto.frechet_ratio["ratio"] <= bar, "auto_seconds": auto.seconds,
            "auto_time_over_fastest": auto.seconds / fastest.seconds,
            "fewest_flops_meeting_bar": cheapest.name, "auto_flops_over_fewest": auto.flops / cheapest.flops}


def hybrid_sweep(global_checkpoint, local_checkpoint, out: Path, lows: Sequence[float], highs: Sequence[float],
                 data: str | None = None, judge=None, n: int = 1000, steps: int = 32, seed: int = 0,
                 budget: float = DEFAULT_BETA, plan_n: int = PlanOptions.n, cache: Path | None = None,
                 batch_size: int = 500, precision: str = "auto", device: str = "cpu", force: bool = False) -> dict:
    """Every single-window schedule [lo, hi] of the grid, plus all-global, all-local and the automatic schedule
    (as in `hybrid_comparison`): the exhaustive reference for the planner. The quality bar is ``budget``: the
    fastest and the fewest-FLOPs schedules within it against the automatic one; Pareto front as table.md (all
    points) and pareto.png."""
    grid = sweep_windows(lows, highs)
    if not grid:
        raise PhasediffError(f"the sweep grid is empty: no window start in {list(lows)} lies below an end in "
                             f"{list(highs)}")

    def plans(auto: Schedule) -> dict[str, Schedule]:
        windows = {"all-global": [(0.0, 1.0)], "all-local": []}
        windows.update({f"[{lo:g}, {hi:g}]": [(lo, hi)] for lo, hi in grid})
        return {**{name: Schedule.hybrid(w) for name, w in windows.items()}, "auto": auto}

    with _hybrid_run(global_checkpoint, local_checkpoint, out, plans, data, judge, n, steps, seed, budget, plan_n,
                     cache, batch_size, precision, device, force, keep_images=0) as (work, results, _, summary, auto):
        front = pareto_front(results)
        summary.update({**_against_the_bar(results, budget), "pareto": [r.name for r in front],
                        "pareto_by_flops": [r.name for r in pareto_front(results, "flops")],
                        "schedules": [r.to_dict() for r in results]})
        save_json(work / "results.json", summary)
        (work / "table.md").write_text(schedule_table(results) + "\n\nPareto front (seconds): "
                                       + ", ".join(summary["pareto"]) + "\nPareto front (FLOPs): "
                                       + ", ".join(summary["pareto_by_flops"]) + "\n" + auto.text() + "\n")
        pareto_figure(results, work / "pareto.png", highlight=("all-global", "all-local", "auto"))
    return summary
