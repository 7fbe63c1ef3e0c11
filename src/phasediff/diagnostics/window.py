"""Choose the hybrid sampler's global window from a measurement of the locality gap.

The gap Delta(t, r) = E || D_r(x_t, t) - D_global(x_t, t) ||^2 / (C H W) is measured along the global
sampler's own trajectories at the times of its grid; the window is where it exceeds the tolerance
(`LocalityGap.window`, the hull of the stretches above it). Outside the window the local model's estimate of
x_0 differs from the global one by less than the tolerance per pixel on average.
"""

from __future__ import annotations

from phasediff.diagnostics.gap import LocalityGap, trajectory_gap
from phasediff.diagnostics.hybrid import Window, local_radius
from phasediff.errors import PhasediffError

DEFAULT_TOLERANCE = 0.002  # per-pixel squared difference of the two x_0 estimates


def auto_window(local, global_, shape: tuple[int, int, int], steps: int = 32, tolerance: float = DEFAULT_TOLERANCE,
                n: int = 256, seed: int = 0) -> tuple[list[Window], LocalityGap]:
    """([window] or [] when the gap never exceeds the tolerance, the measured gap) for a local model."""
    radius = local_radius(local)
    if radius is None:
        raise PhasediffError("the automatic window needs a local (or Wiener + local) model")
    gap = trajectory_gap({radius: local}, global_, n, shape, steps=steps, seed=seed)
    window = gap.window(radius, tolerance)
    return ([] if window is None else [window]), gap
