"""A global window read off a measurement of the locality gap, where no judge of sample quality exists.

The gap Delta(t, r) = E || D_r(x_t, t) - D_global(x_t, t) ||^2 / (C H W) is measured along the global
sampler's own trajectories at the times of its grid; the window is where it exceeds the tolerance
(`LocalityGap.window`, the hull of the stretches above it). Outside the window the local model's estimate of
x_0 differs from the global one by less than the tolerance per pixel on average. A per-step gap does not say
what a step costs the final samples (docs/hybrid-study.md), so `--window auto` of `phasediff sample` and
`phasediff hybrid` is the schedule planner's answer instead (`report.hybrid.auto_schedule`); this rule serves
the reproduction's lattice data, which has no classifier to judge the planner's samples.
"""

from __future__ import annotations

from phasediff.denoisers.compose import Window
from phasediff.diagnostics.gap import LocalityGap, trajectory_gap
from phasediff.errors import PhasediffError

DEFAULT_TOLERANCE = 0.002  # per-pixel squared difference of the two x_0 estimates


def cheap_radius(model) -> int | None:
    """The radius that makes a hybrid's cheap model cheap: its own for a strictly local denoiser, its local
    correction's for a Wiener + local one; None for anything else (a global model)."""
    from phasediff.denoisers.wiener_local import WienerPlusLocalDenoiser

    return model.local.radius if isinstance(model, WienerPlusLocalDenoiser) else getattr(model, "radius", None)


def auto_window(local, global_, shape: tuple[int, int, int], steps: int = 32, tolerance: float = DEFAULT_TOLERANCE,
                n: int = 256, seed: int = 0) -> tuple[list[Window], LocalityGap]:
    """([window] or [] when the gap never exceeds the tolerance, the measured gap) for a local model."""
    radius = cheap_radius(local)
    if radius is None:
        raise PhasediffError("the automatic window needs a local (or Wiener + local) model")
    gap = trajectory_gap({radius: local}, global_, n, shape, steps=steps, seed=seed)
    window = gap.window(radius, tolerance)
    return ([] if window is None else [window]), gap
