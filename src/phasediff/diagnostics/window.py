"""Choose the hybrid sampler's global window from a measurement of the locality gap.

The gap Delta(t, r) = E || D_r(x_t, t) - D_global(x_t, t) ||^2 / (C H W) is measured along the global
sampler's own trajectories at the times of its grid; the window is where it exceeds the tolerance
(`LocalityGap.window`, the hull of the stretches above it). Outside the window the local model's estimate of
x_0 differs from the global one by less than the tolerance per pixel on average.
"""

from __future__ import annotations

from phasediff.denoisers.compose import Window
from phasediff.denoisers.schedule import parse_windows
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


def resolve_windows(text: str, local, global_, shape: tuple[int, int, int], steps: int = 32,
                    tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> list[Window]:
    """--window: 'auto' measures the locality gap (`auto_window`); anything else is parsed (`parse_windows`)."""
    if text.strip().lower() == "auto":
        return auto_window(local, global_, shape, steps=steps, tolerance=tolerance, seed=seed)[0]
    return parse_windows(text)
