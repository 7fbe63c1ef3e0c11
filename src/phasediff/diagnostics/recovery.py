"""Local recovery diagram (the paper's protocol): how well does a radius-r denoiser bring back a noised image?

For each final time T_f and each denoiser D_r, every test image x_0 is noised to
x_{T_f} = (1 - T_f) x_0 + T_f z with fresh seeded noise z, integrated back to t = 0 by the Euler sampler of
`phasediff.sampling` with D_r alone, and compared with x_0 by the per-pixel mean squared error. The paper
(SCIENCE.md section 4) reports the 0.03 contour of this MSE over (T_f, r).

Step count: the paper samples with 32 Euler steps from t = 1; here the path from T_f to 0 gets
``ceil(T_f * steps_per_unit)`` equal steps (default 32 per unit time), so every T_f is integrated with a
step no larger than the 1/32 step of the 32-step grid and at least (n - 1)/n of it. ``steps`` fixes one count
for every T_f instead.

Noise: the noise of T_f number i is drawn from a generator seeded with (seed, i), for all images at once, so
the numbers do not depend on the batch size, and every denoiser sees the same noised images (common random
numbers: differences between radii are measured more precisely than the radii themselves).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from phasediff.errors import PhasediffError
from phasediff.paths import add_noise
from phasediff.progress import progress
from phasediff.sampling import euler, time_grid
from phasediff.stats import Z95, crossings, mean_interval, seeded_noise

DEFAULT_T_FINAL = tuple(float(t) for t in np.round(np.linspace(0.01, 0.99, 11), 6))
DEFAULT_LEVEL = 0.03


def radius_label(radius: int | None) -> str:
    """'3' for a radius, 'global' for None."""
    return "global" if radius is None else str(radius)


def check_denoisers(denoisers: Mapping) -> list:
    """Keys of a {radius: denoiser} mapping, ints ascending then None (global); refuses anything else."""
    if not isinstance(denoisers, Mapping) or not denoisers:
        raise PhasediffError("need a non-empty mapping {radius: denoiser}")
    for key, denoiser in denoisers.items():
        if key is not None and (isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0):
            raise PhasediffError(f"denoiser keys must be radii >= 0 or None (global), got {key!r}")
        if not callable(denoiser):
            raise PhasediffError(f"the denoiser for radius {radius_label(key)} is not callable")
    keys = sorted(int(k) for k in denoisers if k is not None)
    return keys + ([None] if None in denoisers else [])


def check_images(images) -> torch.Tensor:
    """(N, C, H, W) finite float32 tensor from an array, tensor or Dataset (its ``.images``)."""
    images = getattr(images, "images", images)
    try:
        images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    except (TypeError, ValueError, RuntimeError):
        raise PhasediffError(f"images must be a numeric array (N, C, H, W), got {type(images).__name__}") from None
    if images.ndim != 4 or images.shape[0] < 1 or min(images.shape) < 1:
        raise PhasediffError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    images = images.to(torch.float32)
    if not bool(torch.isfinite(images).all()):
        raise PhasediffError("images contain NaN or infinite values")
    return images


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PhasediffError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def recovery_steps(t_final: float, steps_per_unit: float, steps: int | None) -> int:
    """Euler steps from T_f to 0: ``steps`` if given, else ceil(T_f * steps_per_unit) (at least 1)."""
    if steps is not None:
        return steps
    return max(1, math.ceil(t_final * steps_per_unit - 1e-9))


def first_crossing(t: np.ndarray, y: np.ndarray, level: float) -> float | None:
    """The first t where y rises above ``level`` (the start of `phasediff.stats.crossings`), None if never."""
    window = crossings(t, y, level)
    return None if window is None else window[0]


@dataclass
class Crossing:
    """Where the recovery MSE of one radius first reaches a level: ``t`` from the mean, ``t_lo`` from the
    upper end of the 95% interval (it crosses earlier), ``t_hi`` from the lower end. None: not reached
    within the T_f grid. ``below_grid``: already past the level at the smallest T_f (t is then that T_f,
    an upper bound)."""

    radius: int | None
    t: float | None
    t_lo: float | None
    t_hi: float | None
    below_grid: bool

    def to_dict(self) -> dict:
        return {"radius": radius_label(self.radius), "t": self.t, "t_lo": self.t_lo, "t_hi": self.t_hi,
                "below_grid": self.below_grid}


@dataclass
class RecoveryDiagram:
    """Recovery MSE per pixel on a (T_f, r) grid: mse[i, j] for t_final[i] and radii[j] (None: global),
    averaged over ``n_images`` test images; ``stderr`` over images, [lo, hi] = mse -+ 1.96 stderr."""

    t_final: list[float]
    radii: list[int | None]
    mse: np.ndarray
    stderr: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    steps: list[int]
    n_images: int
    seed: int
    seconds: float
    details: dict = field(default_factory=dict)

    def threshold_contour(self, level: float = DEFAULT_LEVEL) -> list[Crossing]:
        """Per radius, the T_f at which the MSE first rises above ``level`` (linear interpolation in T_f), with
        the crossings of the interval's ends as its 95% interval. A radius whose MSE dips back below the
        level later keeps its first crossing."""
        order = np.argsort(self.t_final)
        t = np.asarray(self.t_final, float)[order]
        mse, lo, hi = (np.asarray(a, float)[order] for a in (self.mse, self.lo, self.hi))
        out = []
        for j, radius in enumerate(self.radii):
            out.append(Crossing(radius, first_crossing(t, mse[:, j], level), first_crossing(t, hi[:, j], level),
                                first_crossing(t, lo[:, j], level), bool(mse[0, j] >= level)))
        return out

    def to_dict(self) -> dict:
        return {"t_final": list(self.t_final), "radii": [radius_label(r) for r in self.radii],
                "mse": np.asarray(self.mse).tolist(), "stderr": np.asarray(self.stderr).tolist(),
                "lo": np.asarray(self.lo).tolist(), "hi": np.asarray(self.hi).tolist(), "steps": list(self.steps),
                "n_images": self.n_images, "seed": self.seed, "seconds": self.seconds,
                "contour": {str(DEFAULT_LEVEL): [c.to_dict() for c in self.threshold_contour(DEFAULT_LEVEL)]},
                "details": self.details}

    @classmethod
    def from_dict(cls, data: dict) -> RecoveryDiagram:
        """Inverse of `to_dict` (the stored contour is recomputed, not read)."""
        try:
            return cls(t_final=[float(t) for t in data["t_final"]],
                       radii=[None if r == "global" else int(r) for r in data["radii"]],
                       **{k: np.asarray(data[k], float) for k in ("mse", "stderr", "lo", "hi")},
                       steps=[int(s) for s in data["steps"]], n_images=int(data["n_images"]), seed=int(data["seed"]),
                       seconds=float(data["seconds"]), details=dict(data.get("details") or {}))
        except (KeyError, TypeError, ValueError) as err:
            raise PhasediffError(f"not a recovery diagram: {err}") from None


def recovery_diagram(denoisers: Mapping, images, t_final: Sequence[float] = DEFAULT_T_FINAL,
                     steps_per_unit: float = 32.0, steps: int | None = None, seed: int = 0,
                     batch_size: int = 256, device: str | torch.device = "cpu",
                     clip: bool = False) -> RecoveryDiagram:
    """Recovery MSE of each denoiser in ``denoisers`` ({radius: D}, None for a global one) over ``t_final``.

    ``images``: test images (N, C, H, W) in [0, 1] (array, tensor or Dataset). The denoisers must already live
    on ``device``; they are called without gradients as D(x_t, t) with t a (B,) tensor. ``clip`` clamps the
    recovered image to [0, 1] before the error is taken (off by default, as in the paper's protocol).
    """
    keys = check_denoisers(denoisers)
    images = check_images(images)
    batch_size = check_batch_size(batch_size)
    t_final = [float(t) for t in np.atleast_1d(np.asarray(t_final, dtype=np.float64))]
    if not t_final or any(not (0.0 < t <= 1.0) for t in t_final):
        raise PhasediffError(f"t_final values must lie in (0, 1], got {t_final[:6]}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise PhasediffError(f"steps must be a positive integer or None, got {steps!r}")
    if not (steps_per_unit > 0 and math.isfinite(steps_per_unit)):
        raise PhasediffError(f"steps_per_unit must be a positive number, got {steps_per_unit!r}")
    n = len(images)
    counts = [recovery_steps(t, steps_per_unit, steps) for t in t_final]
    per_image = np.zeros((len(t_final), len(keys), n))
    start = time.perf_counter()
    bar = progress(total=len(t_final) * len(keys) * math.ceil(n / batch_size), desc="recovery")
    with torch.no_grad():
        for i, (tf, count) in enumerate(zip(t_final, counts)):
            noise = seeded_noise(tuple(images.shape), seed, i)
            times = time_grid(count, t_max=tf, t_min=0.0)
            for j, key in enumerate(keys):
                for b in range(0, n, batch_size):
                    x0 = images[b:b + batch_size].to(device)
                    x = add_noise(x0, tf, noise[b:b + batch_size].to(device))
                    out = euler(denoisers[key], x, times)
                    if clip:
                        out = out.clamp(0, 1)
                    err = (out.to(x0.dtype) - x0).square().flatten(1).mean(1)
                    if not bool(torch.isfinite(err).all()):
                        raise PhasediffError(f"the denoiser for radius {radius_label(key)} returned NaN or "
                                             f"infinite values at T_f = {tf:g}")
                    per_image[i, j, b:b + len(x0)] = err.double().cpu().numpy()
                    bar.update()
    bar.close()
    mse, err = mean_interval(per_image)
    return RecoveryDiagram(t_final=t_final, radii=keys, mse=mse, stderr=err, lo=mse - Z95 * err,
                           hi=mse + Z95 * err, steps=counts, n_images=n, seed=int(seed),
                           seconds=time.perf_counter() - start,
                           details={"steps_per_unit": steps_per_unit if steps is None else None,
                                    "clip": clip, "sampler": "euler", "image_shape": list(images.shape[1:])})
