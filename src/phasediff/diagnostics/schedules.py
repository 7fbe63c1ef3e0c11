"""Evaluate sampling schedules (which named model runs at which t, a `Schedule`): quality, wall-clock time,
evaluations, FLOPs.

Every schedule is sampled from the same seeded noise in the same process, so the comparison is paired:
the time is the measured wall-clock of the sampling loop alone, the FLOPs are

    FLOPs = sum over models of (images that model denoised) x (forward FLOPs per image),

the per-image count coming from torch's FLOP counter on each member (a guided member counts both of its
passes), and quality is judged by the project's classifier (`phasediff.metrics.quality`). The ratio FD(schedule) / FD(reference schedule) gets a
paired bootstrap interval (the same resampled indices in both, since sample i of each came from noise i).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from phasediff.denoisers.compose import Window
from phasediff.denoisers.schedule import Schedule, build_member
from phasediff.errors import PhasediffError
from phasediff.metrics import QualityReport, classify, frechet_ratio, quality_from_features
from phasediff.precision import autocast
from phasediff.progress import progress
from phasediff.sampling import sample, time_grid


@torch.no_grad()
def flops_per_image(model, shape: tuple[int, int, int], t: float = 0.5) -> float:
    """Forward FLOPs of one image (torch's counter on a batch of 2, halved); a conditional model is given a
    label, so that a guided member counts both of its passes."""
    x = torch.zeros((2, *shape), device=_device_of(model))
    label = None if getattr(model, "num_classes", None) is None else torch.zeros(2, dtype=torch.long,
                                                                                  device=x.device)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.full((2,), t, device=x.device), label)
    return counter.get_total_flops() / 2


def _device_of(model) -> torch.device:
    parameter = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    return torch.device("cpu") if parameter is None else parameter.device


@dataclass
class ScheduleResult:
    """One schedule: its text, the steps each member ran, cost and (when judged) quality."""

    name: str
    schedule: str
    n: int
    steps: int
    member_steps: dict[str, int]
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


def run_schedule(name: str, models: dict[str, object], schedule: Schedule, n: int, shape: tuple[int, int, int],
                 steps: int = 32, method: str = "euler", seed: int = 0, batch_size: int = 500,
                 precision: str = "bf16", flops: dict[str, float] | None = None, device: str = "cpu",
                 label=None) -> tuple[np.ndarray, ScheduleResult]:
    """Sample n images with the schedule's denoiser; (images clipped to [0, 1], its cost). ``flops``: per
    member (measured when not given)."""
    denoiser = schedule.build(models)
    flops = flops or member_flops(models, schedule, shape)
    start = time.perf_counter()
    with autocast(precision, torch.device(device).type):
        images = sample(denoiser, n, shape, steps=steps, method=method, seed=seed, batch_size=batch_size,
                        device=device, label=label)
    seconds = time.perf_counter() - start
    result = ScheduleResult(
        name=name, schedule=schedule.text(), n=n, steps=steps, member_steps=schedule.steps(time_grid(steps)[:-1]),
        seconds=seconds, images_per_second=n / seconds, evaluations=dict(denoiser.evaluations),
        flops=float(sum(count * flops[member] for member, count in denoiser.evaluations.items())))
    return images.clamp(0, 1).numpy(), result


def member_flops(models: dict[str, object], schedule: Schedule, shape: tuple[int, int, int]) -> dict[str, float]:
    """Forward FLOPs per image of each member of the schedule."""
    return {member: flops_per_image(build_member(member, models), shape) for member in schedule.members()}


def compare_schedules(models: dict[str, object], schedules: dict[str, Schedule], judge, reference: np.ndarray,
                      n: int, shape: tuple[int, int, int], steps: int = 32, seed: int = 0, batch_size: int = 500,
                      precision: str = "bf16", baseline: str | None = None, rounds: int = 50,
                      keep_images: int = 64, device: str = "cpu") -> tuple[list[ScheduleResult], dict[str, np.ndarray]]:
    """Run and judge every schedule of the named models on the same noise; paired FD ratios against
    ``baseline`` (a schedule's name). Returns the results and the first ``keep_images`` samples of each."""
    if baseline is not None and baseline not in schedules:
        raise PhasediffError(f"baseline schedule {baseline!r} is not among {list(schedules)}")
    for schedule in schedules.values():
        schedule.build(models)  # every name bound, every member valid, before any sampling
    members = dict.fromkeys(member for schedule in schedules.values() for member in schedule.members())
    flops = {member: flops_per_image(build_member(member, models), shape) for member in members}
    _warm_up(models, shape, precision, device)
    results, features, grids = [], {}, {}
    reference_features, _ = classify(judge, reference)
    bar = progress(schedules.items(), desc="schedules", total=len(schedules))
    for name, schedule in bar:
        bar.set_postfix_str(name)
        images, result = run_schedule(name, models, schedule, n, shape, steps, seed=seed, batch_size=batch_size,
                                      precision=precision, flops=flops, device=device)
        features[name], probs = classify(judge, images)
        result.quality = quality_from_features(features[name], probs, reference_features, rounds=rounds, seed=seed)
        grids[name] = images[:keep_images]
        results.append(result)
    if baseline is not None:
        for result in results:
            result.frechet_ratio = frechet_ratio(features[result.name], features[baseline], reference_features,
                                                 seed=seed)
    return results, grids


def interleaved_median(runs: dict[str, Callable[[], object]], rounds: int, device: str = "cpu") -> dict[str, float]:
    """Median wall-clock seconds of each run over ``rounds`` rounds, every run once a round in an order that
    rotates: a slower minute of the machine hits every run alike, which timing one after another cannot promise.
    One untimed call of each first."""
    names, seconds = list(runs), {name: [] for name in runs}
    for run in runs.values():
        run()
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            _synchronise(device)
            start = time.perf_counter()
            runs[name]()
            _synchronise(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def _synchronise(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def interleaved_seconds(models: dict[str, object], schedules: dict[str, Schedule], shape: tuple[int, int, int],
                        steps: int = 32, method: str = "euler", batch: int = 64, rounds: int = 5,
                        precision: str = "bf16", device: str = "cpu") -> dict[str, float]:
    """Wall-clock seconds per image of each whole schedule (sampler included): one batch from the same noise
    each round (`interleaved_median`) / batch."""
    denoisers = {name: schedule.build(models) for name, schedule in schedules.items()}

    def run(denoiser):
        return lambda: sample(denoiser, batch, shape, steps=steps, method=method, batch_size=batch, device=device)

    with autocast(precision, torch.device(device).type):
        medians = interleaved_median({name: run(d) for name, d in denoisers.items()}, rounds, device)
    return {name: value / batch for name, value in medians.items()}


@torch.no_grad()
def _warm_up(models: dict[str, object], shape, precision: str, device: str) -> None:
    """One small forward pass of each model, so that no schedule pays for first-call set-up."""
    x = torch.zeros((8, *shape), device=device)
    with autocast(precision, torch.device(device).type):
        for model in models.values():
            model(x, torch.full((8,), 0.5, device=device))


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
