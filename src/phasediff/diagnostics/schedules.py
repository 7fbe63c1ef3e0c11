"""Evaluate sampling schedules (which model runs at which t): quality, wall-clock time, evaluations, FLOPs.

Every schedule is sampled from the same seeded noise in the same process, so the comparison is paired:
the time is the measured wall-clock of the sampling loop alone, the FLOPs are

    FLOPs = sum over models of (images that model denoised) x (forward FLOPs per image),

the per-image count coming from torch's FLOP counter on the model itself, and quality is judged by the
project's classifier (`phasediff.metrics.quality`). The ratio FD(schedule) / FD(reference schedule) gets a
paired bootstrap interval (the same resampled indices in both, since sample i of each came from noise i).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from phasediff.diagnostics.hybrid import Hybrid, Window, check_windows, global_steps
from phasediff.errors import PhasediffError
from phasediff.metrics import FrechetReference, QualityReport, classify, one_blas_thread, quality_from_features
from phasediff.precision import autocast
from phasediff.progress import progress
from phasediff.sampling import sample, time_grid

@torch.no_grad()
def flops_per_image(model, shape: tuple[int, int, int], t: float = 0.5) -> float:
    """Forward FLOPs of one image (torch's counter on a batch of 2, halved)."""
    x = torch.zeros((2, *shape))
    with FlopCounterMode(display=False) as counter:
        model(x, torch.full((2,), t))
    return counter.get_total_flops() / 2


@dataclass
class ScheduleResult:
    """One schedule: its global windows, cost and (when judged) quality."""

    name: str
    windows: list[Window]
    n: int
    steps: int
    global_steps: int
    seconds: float
    images_per_second: float
    evaluations: dict[str, int]
    flops: float
    quality: QualityReport | None = None
    frechet_ratio: dict[str, float] | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["quality"] = None if self.quality is None else self.quality.to_dict()
        return out


def run_schedule(name: str, local, global_, windows: Sequence[Window], n: int, shape: tuple[int, int, int],
                 steps: int = 32, method: str = "euler", seed: int = 0, batch_size: int = 500,
                 precision: str = "bf16", flops: dict[str, float] | None = None) -> tuple[np.ndarray, ScheduleResult]:
    """Sample n images with the hybrid schedule; (images clipped to [0, 1], its cost)."""
    networks = autocast(precision)
    hybrid = Hybrid(local, global_, windows)
    flops = flops or {"local": flops_per_image(local, shape), "global": flops_per_image(global_, shape)}
    start = time.perf_counter()
    with networks:
        images = sample(hybrid, n, shape, steps=steps, method=method, seed=seed, batch_size=batch_size)
    seconds = time.perf_counter() - start
    times = time_grid(steps)[:-1].tolist()
    result = ScheduleResult(
        name=name, windows=hybrid.windows, n=n, steps=steps, global_steps=global_steps(hybrid.windows, times),
        seconds=seconds, images_per_second=n / seconds, evaluations=dict(hybrid.evaluations),
        flops=float(sum(hybrid.evaluations[k] * flops[k] for k in flops)))
    return images.clamp(0, 1).numpy(), result


def frechet_ratio(features: np.ndarray, baseline: np.ndarray, reference: np.ndarray, rounds: int = 200,
                  seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """FD(features) / FD(baseline) against the reference, bias-corrected by a paired bootstrap (the same
    resampled indices in both sets): ratio = 2 R - mean(R*), with the basic interval [2 R - q_hi, 2 R - q_lo]
    (floored at 0), R the plug-in ratio. Resampled sets inflate a small FD more than a large one, so the draws
    R* are biased and a percentile interval can miss R itself."""
    if len(features) != len(baseline):
        raise PhasediffError("a paired Frechet ratio needs the same number of samples in both sets")
    rng, yardstick = np.random.default_rng(seed), FrechetReference.of(reference)
    plug_in = yardstick.distance(features) / yardstick.distance(baseline)
    draws = []
    with one_blas_thread():
        for _ in range(rounds):
            idx = rng.integers(0, len(features), len(features))
            draws.append(yardstick.distance(features[idx]) / yardstick.distance(baseline[idx]))
    q_lo, q_hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"ratio": float(max(0.0, 2 * plug_in - np.mean(draws))), "low": float(max(0.0, 2 * plug_in - q_hi)),
            "high": float(max(0.0, 2 * plug_in - q_lo)), "plug_in": float(plug_in)}


def compare_schedules(schedules: dict[str, Sequence[Window]], local, global_, judge, reference: np.ndarray,
                      n: int, shape: tuple[int, int, int], steps: int = 32, seed: int = 0, batch_size: int = 500,
                      precision: str = "bf16", baseline: str | None = None, rounds: int = 50,
                      keep_images: int = 64) -> tuple[list[ScheduleResult], dict[str, np.ndarray]]:
    """Run and judge every schedule on the same noise; FD ratios against ``baseline`` (a schedule name).

    Returns the results and the first ``keep_images`` samples of each schedule (for grids).
    """
    if baseline is not None and baseline not in schedules:
        raise PhasediffError(f"baseline schedule {baseline!r} is not among {list(schedules)}")
    schedules = {name: check_windows(w) for name, w in schedules.items()}
    flops = {"local": flops_per_image(local, shape), "global": flops_per_image(global_, shape)}
    _warm_up(local, global_, shape, precision)
    results, features, grids = [], {}, {}
    reference_features, _ = classify(judge, reference)
    bar = progress(schedules.items(), desc="schedules", total=len(schedules))
    for name, windows in bar:
        bar.set_postfix_str(name)
        images, result = run_schedule(name, local, global_, windows, n, shape, steps, seed=seed,
                                      batch_size=batch_size, precision=precision, flops=flops)
        features[name], probs = classify(judge, images)
        result.quality = quality_from_features(features[name], probs, reference_features, rounds=rounds, seed=seed)
        grids[name] = images[:keep_images]
        results.append(result)
    if baseline is not None:
        for result in results:
            result.frechet_ratio = frechet_ratio(features[result.name], features[baseline], reference_features,
                                                 seed=seed)
    return results, grids


@torch.no_grad()
def _warm_up(local, global_, shape, precision: str) -> None:
    """One small forward pass of each model, so that no schedule pays for first-call set-up."""
    x = torch.zeros((8, *shape))
    with autocast(precision):
        local(x, torch.full((8,), 0.5))
        global_(x, torch.full((8,), 0.5))


def pareto_front(results: Sequence[ScheduleResult], cost: str = "seconds") -> list[ScheduleResult]:
    """Schedules that no other beats in both cost (``seconds`` or ``flops``) and Frechet distance, cheapest first."""
    if cost not in ("seconds", "flops"):
        raise PhasediffError(f"pareto_front: cost must be 'seconds' or 'flops', got {cost!r}")
    judged = sorted((r for r in results if r.quality is not None), key=lambda r: (getattr(r, cost), r.quality.frechet))
    front, best = [], float("inf")
    for result in judged:
        if result.quality.frechet < best:
            front.append(result)
            best = result.quality.frechet
    return front


def sweep_windows(lows: Sequence[float], highs: Sequence[float]) -> list[Window]:
    """Every window [lo, hi] with lo < hi from the two grids (the single-window schedules of a sweep)."""
    return [(float(lo), float(hi)) for lo in lows for hi in highs if lo < hi]
