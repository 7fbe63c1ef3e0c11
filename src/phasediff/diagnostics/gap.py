"""Locality gap: how far a radius-r denoiser is from a global one, over (t, r).

    Delta(t, r) = E || D_r(x_t, t) - D_global(x_t, t) ||^2 / (C H W)        (per-pixel mean squared difference)

measured on two distributions of x_t:

- ``forward``: x_t = (1 - t) x_0 + t z from test images x_0 and fresh seeded noise at each t;
- ``trajectory``: the states that the Euler sampler visits when it runs the GLOBAL denoiser from pure noise,
  at each time of its grid (t = 1, 1 - 1/steps, ..., 1/steps); every D_r is evaluated on the same x_t.

It works for any family: local networks against the global U-Net, `PatchPosteriorDenoiser` of radius r
against `EmpiricalDenoiser`, `LocalWienerDenoiser` against `WienerDenoiser`. The expectation is estimated by
the mean over images (forward) or trajectories, with the standard error over them and a 95% normal interval.
`LocalityGap.window` turns a row of the table into the time window in which a hybrid sampler should use the
global denoiser.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from phasediff.diagnostics.recovery import check_batch_size, check_denoisers, check_images
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise
from phasediff.progress import progress
from phasediff.sampling import euler, time_grid
from phasediff.stats import Z95, crossings, mean_interval, seeded_noise

BOUNDS = {"mean": "gap", "upper": "hi", "lower": "lo"}


@dataclass
class LocalityGap:
    """Delta(t, r) on a grid: gap[i, j] for times[i] (ascending) and radii[j]; ``stderr`` over images or
    trajectories; [lo, hi] = gap -+ 1.96 stderr (lo may dip below 0; the gap itself cannot)."""

    times: list[float]
    radii: list[int]
    gap: np.ndarray
    stderr: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mode: str
    n: int
    seed: int
    seconds: float
    details: dict = field(default_factory=dict)

    def column(self, radius: int) -> int:
        """Index of ``radius`` in ``radii``."""
        if radius not in self.radii:
            raise PhasediffError(f"radius {radius!r} was not measured (radii: {', '.join(map(str, self.radii))})")
        return self.radii.index(radius)

    def window(self, radius: int, tolerance: float, bound: str = "mean") -> tuple[float, float] | None:
        """The time window [t_lo, t_hi] in which the gap of ``radius`` exceeds ``tolerance``, None if it never
        does on the measured grid.

        The ends are interpolated linearly between the grid times on either side of a crossing
        (`phasediff.stats.crossings`); an end that exceeds the tolerance at the first or last measured time is
        that time (the table says nothing beyond it). If the gap exceeds the tolerance on several disjoint
        stretches, the HULL is returned (from the start of the first stretch to the end of the last): a hybrid
        sampler using the global denoiser inside it is at least as accurate as one that follows the stretches,
        at the price of the global steps in between. ``bound`` picks the row compared with the tolerance:
        "mean" (the estimate), "upper" (the upper 95% end: a wider, conservative window) or "lower" (the lower
        end: narrower).
        """
        if bound not in BOUNDS:
            raise PhasediffError(f"bound must be one of {', '.join(BOUNDS)}, got {bound!r}")
        try:
            value = float(tolerance)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise PhasediffError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
        tolerance = value
        j = self.column(radius)
        order = np.argsort(self.times)
        t = np.asarray(self.times, float)[order]
        g = np.asarray(getattr(self, BOUNDS[bound]), float)[order, j]
        return crossings(t, g, tolerance)

    def to_dict(self) -> dict:
        return {"times": list(self.times), "radii": list(self.radii), "gap": np.asarray(self.gap).tolist(),
                "stderr": np.asarray(self.stderr).tolist(), "lo": np.asarray(self.lo).tolist(),
                "hi": np.asarray(self.hi).tolist(), "mode": self.mode, "n": self.n, "seed": self.seed,
                "seconds": self.seconds, "details": self.details}

    @classmethod
    def from_dict(cls, data: dict) -> LocalityGap:
        """Inverse of `to_dict`."""
        try:
            return cls(times=[float(t) for t in data["times"]], radii=[int(r) for r in data["radii"]],
                       **{k: np.asarray(data[k], float) for k in ("gap", "stderr", "lo", "hi")},
                       mode=str(data["mode"]), n=int(data["n"]), seed=int(data["seed"]),
                       seconds=float(data["seconds"]), details=dict(data.get("details") or {}))
        except (KeyError, TypeError, ValueError) as err:
            raise PhasediffError(f"not a locality gap table: {err}") from None


def _check_pair(local: Mapping, global_denoiser) -> list[int]:
    keys = check_denoisers(local)
    if None in keys:
        raise PhasediffError("the local denoisers must be keyed by their radius (None is the global one)")
    if not callable(global_denoiser):
        raise PhasediffError("the global denoiser is not callable")
    return keys


def _per_image(a: torch.Tensor, b: torch.Tensor, what: str, t: float) -> np.ndarray:
    diff = (a.double() - b.double()).square().flatten(1).mean(1)
    if not bool(torch.isfinite(diff).all()):
        raise PhasediffError(f"{what} returned NaN or infinite values at t = {t:g}")
    return diff.cpu().numpy()


def _result(per_item: np.ndarray, times: list[float], keys: list[int], mode: str, seed: int, start: float,
            details: dict) -> LocalityGap:
    gap, err = mean_interval(per_item)
    return LocalityGap(times=times, radii=keys, gap=gap, stderr=err, lo=gap - Z95 * err, hi=gap + Z95 * err,
                       mode=mode, n=per_item.shape[-1], seed=int(seed), seconds=time.perf_counter() - start,
                       details=details)


def _check_times(times) -> list[float]:
    values = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if values.ndim != 1 or len(values) < 1 or not np.all(np.isfinite(values)) or np.any(values < 0) \
            or np.any(values > 1):
        raise PhasediffError(f"times must be values in [0, 1], got {values.ravel().tolist()[:6]}")
    if len(np.unique(values)) != len(values):
        raise PhasediffError("times must not repeat")
    return [float(t) for t in np.sort(values)]


def grid_times(steps: int) -> list[float]:
    """The times at which the Euler sampler over ``time_grid(steps)`` calls the denoiser, ascending."""
    return sorted(float(t) for t in time_grid(steps)[:-1].tolist())


def forward_gap(local: Mapping[int, object], global_denoiser, images, times: Sequence[float] | None = None,
                steps: int = 32, seed: int = 0, batch_size: int = 256,
                device: str | torch.device = "cpu") -> LocalityGap:
    """Delta(t, r) on the forward process: x_t = (1 - t) x_0 + t z for the test ``images`` and noise drawn
    afresh at each t (seeded with (seed, index of t)); every denoiser sees the same x_t. ``times`` defaults to
    the sampler's evaluation times for ``steps`` Euler steps. The denoisers must already live on ``device``."""
    keys = _check_pair(local, global_denoiser)
    images = check_images(images)
    batch_size = check_batch_size(batch_size)
    times = _check_times(grid_times(steps) if times is None else times)
    n = len(images)
    per_item = np.zeros((len(times), len(keys), n))
    start = time.perf_counter()
    bar = progress(total=len(times) * math.ceil(n / batch_size), desc="gap (forward)")
    with torch.no_grad():
        for i, t in enumerate(times):
            noise = seeded_noise(tuple(images.shape), seed, i)
            for b in range(0, n, batch_size):
                x0 = images[b:b + batch_size].to(device)
                x = add_noise(x0, t, noise[b:b + batch_size].to(device))
                tt = torch.full((len(x),), t, dtype=x.dtype, device=x.device)
                ref = global_denoiser(x, tt)
                for j, key in enumerate(keys):
                    per_item[i, j, b:b + len(x)] = _per_image(local[key](x, tt), ref, f"radius {key}", t)
                bar.update()
    bar.close()
    return _result(per_item, times, keys, "forward", seed, start,
                   {"image_shape": list(images.shape[1:]), "steps": None})


def _recorder(local: Mapping, keys: list[int], per_item: np.ndarray):
    """A sampler callback ``record(step, t, x, x0_hat)``: every local denoiser D_r (column j) is evaluated on
    the sampler's state x_t, and its per-image gap to the global answer x0_hat is stored in per_item[i, j]
    (times, radii, images of the batch), i = len(times) - 1 - step: the index of t among the ascending times."""

    def record(step: int, t: float, x: torch.Tensor, x0_hat: torch.Tensor) -> None:
        i = len(per_item) - 1 - step
        tt = torch.full((len(x),), t, dtype=x.dtype, device=x.device)
        for j, key in enumerate(keys):
            per_item[i, j] = _per_image(local[key](x, tt), x0_hat, f"radius {key}", t)

    return record


def trajectory_gap(local: Mapping[int, object], global_denoiser, n: int, shape: Sequence[int], steps: int = 32,
                   seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu") -> LocalityGap:
    """Delta(t, r) along ``n`` Euler trajectories of the GLOBAL denoiser from pure noise (seeded with
    (seed, 0)) over ``time_grid(steps)``: at each grid time t > 0 every D_r is evaluated on the state x_t that
    the global sampler reached. ``shape`` = (C, H, W). The denoisers must already live on ``device``."""
    keys = _check_pair(local, global_denoiser)
    batch_size = check_batch_size(batch_size)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PhasediffError(f"n must be a positive integer, got {n!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise PhasediffError(f"shape must be (C, H, W), got {shape}")
    grid = time_grid(steps)
    times = grid_times(steps)
    noise = seeded_noise((n, *shape), seed, 0)
    per_item = np.zeros((len(times), len(keys), n))
    start = time.perf_counter()
    for b in progress(range(0, n, batch_size), desc="gap (trajectory)"):
        record = _recorder(local, keys, per_item[:, :, b:b + batch_size])
        euler(global_denoiser, noise[b:b + batch_size].to(device), grid, callback=record)
    return _result(per_item, times, keys, "trajectory", seed, start,
                   {"image_shape": list(shape), "steps": steps, "sampler": "euler"})
