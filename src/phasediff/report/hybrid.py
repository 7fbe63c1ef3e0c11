"""Sample files, sample judging, and the hybrid-sampler comparison and sweep as run directories.

    sample_to_file      one checkpoint (or a hybrid of a global and a local one) -> .npz + PNG grid
    judge_file          quality of a .npz of samples against the test split, by the project's classifier
    hybrid_comparison   the paper's schedules and ours on the same noise: table, grids, results.json
    hybrid_sweep        a grid of global windows: the speed / quality Pareto front, table and figure
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from phasediff.denoisers.checkpoint import load, read_info
from phasediff.diagnostics.hybrid import Hybrid, Window, local_radius, parse_window
from phasediff.diagnostics.schedules import ScheduleResult, compare_schedules, pareto_front
from phasediff.diagnostics.window import DEFAULT_TOLERANCE, auto_window
from phasediff.errors import PhasediffError
from phasediff.precision import autocast, resolve_precision
from phasediff.report.figures import image_grid, plt
from phasediff.rundir import run_directory, save_json, save_yaml, write_atomic
from phasediff.sampling import sample

CHECKPOINTS = Path(__file__).resolve().parents[3] / "checkpoints"
PAPER_WINDOW = (0.2, 0.5)


def _shape(checkpoint) -> tuple[int, int, int]:
    shape = tuple(read_info(checkpoint).get("image_shape") or ())
    if len(shape) != 3:
        raise PhasediffError(f"checkpoint {checkpoint} does not record the image shape it was trained on")
    return shape


def _pair(global_checkpoint, local_checkpoint):
    """(global model, local model, image shape), checking that both were trained on images of one shape."""
    global_, local = load(global_checkpoint), load(local_checkpoint)
    if local_radius(local) is None:
        raise PhasediffError(f"{local_checkpoint} is not a local (or Wiener + local) model")
    if getattr(global_, "radius", 0) is not None:
        raise PhasediffError(f"{global_checkpoint} is not a global model (it has radius {global_.radius})")
    shape = _shape(global_checkpoint)
    if tuple(_shape(local_checkpoint)) != shape:
        raise PhasediffError(f"{local_checkpoint} and {global_checkpoint} were trained on different image shapes")
    return global_, local, shape


def resolve_windows(window: str, local, global_, shape, steps: int, tolerance: float, seed: int):
    """(windows, gap or None) from --window: 'auto' measures the locality gap, anything else is parsed."""
    if window == "auto":
        return auto_window(local, global_, shape, steps=steps, tolerance=tolerance, seed=seed)
    return parse_window(window), None


def sample_to_file(checkpoint, out, n: int, steps: int = 32, method: str = "euler", seed: int = 0,
                   label: int | None = None, guidance: float = 1.0, batch_size: int = 500, device: str = "cpu",
                   local=None, window: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
                   precision: str = "fp32") -> dict:
    """Sample a saved denoiser (or the hybrid of it with the ``local`` checkpoint inside ``window``) into ``out``
    (.npz, images (N, C, H, W) clipped to [0, 1]) and a PNG grid beside it."""
    networks = autocast(precision)
    if (local is None) != (window is None):
        raise PhasediffError("--local and --window go together")
    shape = _shape(checkpoint)
    extra = {}
    if local is None:
        model = load(checkpoint, device)
    else:
        global_, local_model, shape = _pair(checkpoint, local)
        windows, _ = resolve_windows(window, local_model, global_, shape, steps, tolerance, seed)
        model = Hybrid(local_model, global_, windows).to(device)
        extra["windows"] = windows
    labels, denoiser = None, model
    if label is not None:
        conditional = model.global_ if isinstance(model, Hybrid) else model
        if getattr(conditional, "num_classes", None) is None or not 0 <= label < conditional.num_classes:
            raise PhasediffError(f"label {label} needs a conditional model with that class")
        labels = torch.full((n,), label, dtype=torch.long)
        if guidance != 1.0:
            if isinstance(model, Hybrid):
                raise PhasediffError("--guidance is not supported with --local")
            denoiser = lambda x, t, y: model.guided(x, t, y, guidance)  # noqa: E731
    elif guidance != 1.0:
        raise PhasediffError("--guidance needs --label")
    start = time.perf_counter()
    with networks:
        images = sample(denoiser, n, shape, steps=steps, method=method, seed=seed, label=labels,
                        batch_size=batch_size, device=device)
    seconds = time.perf_counter() - start
    images = images.clamp(0, 1).numpy().astype(np.float32)
    out = Path(out)
    grid = out.with_suffix(".png")
    write_atomic(out, lambda tmp: np.savez_compressed(tmp, images=images))
    title = f"{Path(checkpoint).name}: {steps} {method} steps"
    write_atomic(grid, lambda tmp: image_grid(images[:64], tmp, title=title))
    if isinstance(model, Hybrid):
        extra["evaluations"] = dict(model.evaluations)
    return {"out": str(out), "grid": str(grid), "n": n, "steps": steps, "method": method, "seconds": seconds,
            "images_per_second": n / seconds, **extra}


def default_judge(data: str) -> Path:
    """The committed classifier for a named dataset (mnist, fashion-mnist)."""
    name = data.split(":")[0]
    path = CHECKPOINTS / name / "classifier"
    if not path.with_suffix(".json").is_file():
        raise PhasediffError(f"no committed classifier for {data!r}; pass --judge CHECKPOINT")
    return path


def _judge_and_reference(data: str, judge):
    from phasediff.data.registry import load_dataset

    classifier = load(judge or default_judge(data))
    return classifier, load_dataset(data, split="test").images


def judge_file(samples, data: str, judge=None, memorisation: bool = True, rounds: int = 50, seed: int = 0) -> dict:
    """Quality of the images in a .npz (key ``images``) against the test split of ``data``."""
    from phasediff.data.images import load_file
    from phasediff.data.registry import load_dataset
    from phasediff.metrics import quality

    images = load_file(Path(samples))[0]
    classifier, reference = _judge_and_reference(data, judge)
    if tuple(images.shape[1:]) != tuple(reference.shape[1:]):
        raise PhasediffError(f"samples of shape {tuple(images.shape[1:])} do not match {data} "
                             f"{tuple(reference.shape[1:])}")
    training = load_dataset(data, split="train").images if memorisation else None
    report = quality(classifier, images, reference, training=training, rounds=rounds, seed=seed)
    return {"samples": str(samples), "data": data, **report.to_dict()}


def paper_schedules(auto: Sequence[Window]) -> dict[str, list[Window]]:
    """The paper's comparison at any step count, and ours with the measured window."""
    lo, hi = PAPER_WINDOW
    return {"all-global": [(0.0, 1.0)], "all-local": [], "local-global-local [0.2, 0.5]": [(lo, hi)],
            "global-local-global": [(0.0, lo), (hi, 1.0)], "auto": list(auto)}


def schedule_table(results: Sequence[ScheduleResult], baseline: str = "all-global") -> str:
    """A Markdown table: quality with intervals, time, speed-up, evaluations and FLOPs per schedule."""
    base = next((r for r in results if r.name == baseline), None)
    lines = ["| schedule | global windows | global steps | FD [95%] | FD / baseline [95%] | confidence | "
             "seconds | speed-up | GFLOPs |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        q = r.quality
        windows = ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in r.windows) or "none"
        ratio = "" if r.frechet_ratio is None else (f"{r.frechet_ratio['ratio']:.3f} "
                                                    f"[{r.frechet_ratio['low']:.3f}, {r.frechet_ratio['high']:.3f}]")
        speed = "" if base is None else f"{base.seconds / r.seconds:.2f}x"
        lines.append(f"| {r.name} | {windows} | {r.global_steps}/{r.steps} | {q.frechet:.3g} [{q.frechet_low:.3g}, "
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


def _gap_figure(gap, path: Path, tolerance: float, windows: Sequence[Window]) -> None:
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


def hybrid_comparison(global_checkpoint, local_checkpoint, out: Path, data: str | None = None, judge=None,
                      n: int = 5000, steps: int = 32, seed: int = 0, tolerance: float = DEFAULT_TOLERANCE,
                      batch_size: int = 500, precision: str = "auto", force: bool = False,
                      schedules: dict[str, list[Window]] | None = None) -> dict:
    """The paper's schedules and the automatic window, sampled from the same noise and judged; a run folder
    with results.json, table.md, gap.png and one grid per schedule. ``precision`` auto: bf16 where native."""
    global_, local, shape = _pair(global_checkpoint, local_checkpoint)
    data, precision = data or read_info(global_checkpoint).get("data"), resolve_precision(precision)
    classifier, reference = _judge_and_reference(data, judge)
    with run_directory(out, force=force) as work:
        windows, gap = auto_window(local, global_, shape, steps=steps, tolerance=tolerance, seed=seed)
        plan = schedules or paper_schedules(windows)
        results, grids = compare_schedules(plan, local, global_, classifier, reference, n=n, shape=shape,
                                           steps=steps, seed=seed, batch_size=batch_size, precision=precision,
                                           baseline="all-global" if "all-global" in plan else None)
        summary = {"global": str(global_checkpoint), "local": str(local_checkpoint), "data": data, "n": n,
                   "steps": steps, "seed": seed, "precision": precision, "threads": torch.get_num_threads(),
                   "tolerance": tolerance, "auto_window": windows, "gap": gap.to_dict(),
                   "schedules": [r.to_dict() for r in results]}
        save_yaml(work / "config.yaml", {k: summary[k] for k in ("global", "local", "data", "n", "steps", "seed",
                                                                  "precision", "tolerance")})
        save_json(work / "results.json", summary)
        (work / "table.md").write_text(schedule_table(results) + "\n")
        _gap_figure(gap, work / "gap.png", tolerance, windows)
        for i, (name, images) in enumerate(grids.items()):
            image_grid(images, work / f"grid-{i}.png", title=name)
    return summary


QUALITY_BAR = 1.15  # a schedule "meets the quality" when its paired FD ratio to all-global is at most this


def _against_the_bar(results: Sequence[ScheduleResult]) -> dict:
    """The fastest (and the cheapest by FLOPs) schedule whose bias-corrected paired FD ratio to all-global
    (`frechet_ratio`) is within QUALITY_BAR, and how the automatic one compares."""
    by_name = {r.name: r for r in results}
    meeting = [r for r in results if r.frechet_ratio["ratio"] <= QUALITY_BAR]
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
                 force: bool = False) -> dict:
    """Every single-window schedule [lo, hi] of the grid, plus all-global, all-local and the automatic window:
    Pareto front as table.md (all points) and pareto.png; the locality gap behind the automatic window in
    results.json and gap.png."""
    from phasediff.diagnostics.schedules import sweep_windows

    global_, local, shape = _pair(global_checkpoint, local_checkpoint)
    data, precision = data or read_info(global_checkpoint).get("data"), resolve_precision(precision)
    classifier, reference = _judge_and_reference(data, judge)
    with run_directory(out, force=force) as work:
        windows, gap = auto_window(local, global_, shape, steps=steps, tolerance=tolerance, seed=seed)
        plan = {"all-global": [(0.0, 1.0)], "all-local": [], "auto": windows}
        plan.update({f"[{lo:g}, {hi:g}]": [(lo, hi)] for lo, hi in sweep_windows(lows, highs)})
        results, _ = compare_schedules(plan, local, global_, classifier, reference, n=n, shape=shape, steps=steps,
                                       seed=seed, batch_size=batch_size, precision=precision,
                                       baseline="all-global", keep_images=0)
        front = pareto_front(results)
        summary = {**_against_the_bar(results), "global": str(global_checkpoint), "local": str(local_checkpoint),
                   "data": data, "n": n, "steps": steps, "seed": seed, "precision": precision, "tolerance": tolerance,
                   "auto_window": windows, "gap": gap.to_dict(), "pareto": [r.name for r in front],
                   "pareto_by_flops": [r.name for r in pareto_front(results, "flops")],
                   "schedules": [r.to_dict() for r in results]}
        save_json(work / "results.json", summary)
        (work / "table.md").write_text(schedule_table(results) + "\n\nPareto front (seconds): "
                                       + ", ".join(summary["pareto"]) + "\nPareto front (FLOPs): "
                                       + ", ".join(summary["pareto_by_flops"]) + "\n")
        pareto_figure(results, work / "pareto.png", highlight=("all-global", "all-local", "auto"))
        _gap_figure(gap, work / "gap.png", tolerance, windows)
    return summary
