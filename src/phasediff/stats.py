"""Small shared statistics: the normal quantile, mean intervals, seeded noise streams, crossings of a level."""

from __future__ import annotations

import math

import numpy as np
import torch

from phasediff.errors import PhasediffError

Z95 = 1.959963984540054  # two-sided 95% normal quantile: Phi^{-1}(0.975)


def mean_interval(per_item: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and its standard error along ``axis``: s.e. = std(ddof=1) / sqrt(n), 0 for a single item."""
    n = per_item.shape[axis]
    mean = per_item.mean(axis)
    err = per_item.std(axis, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, err


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion, k successes in n trials (arrays broadcast):

        (k + z^2 / 2) / (n + z^2)  -+  z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4).

    Unlike p -+ z sqrt(p (1 - p) / n) it stays inside [0, 1] and is not empty at k = 0 or k = n."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise PhasediffError(f"wilson_interval needs 0 <= k <= n and n >= 1, got k={k.tolist()}, n={n.tolist()}")
    centre = (k + z**2 / 2) / (n + z**2)
    half = z / (n + z**2) * np.sqrt(k * (n - k) / n + z**2 / 4)
    return centre - half, centre + half


def seeded_generator(seed: int, *index: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *index) by NumPy's SeedSequence: one independent stream per index."""
    state = int(np.random.SeedSequence([int(seed), *map(int, index)]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(state)


def seeded_noise(shape: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
    """Standard normal noise from a generator seeded with (seed, index): independent streams per index."""
    return torch.randn(shape, generator=seeded_generator(seed, index))


def crossings(t, y, level: float) -> tuple[float, float] | None:
    """The hull [t_first, t_last] of the times where the curve y(t) exceeds ``level`` (y > level), None if no
    grid value does.

    The curve is linear between grid points, so an end between grid points i and k (one above the level, one
    not) is

        t_i + (level - y_i) / (y_k - y_i) * (t_k - t_i),

    with i the earlier point for t_first and the later one for t_last. An end whose grid value at the first
    or last grid time exceeds the level is that time: the grid says nothing beyond it. If the curve exceeds
    the level on several disjoint stretches, the hull runs from the start of the first to the end of the last.
    """
    t, y = np.asarray(t, float), np.asarray(y, float)
    if t.shape != y.shape or t.ndim != 1:
        raise PhasediffError(f"crossings needs one time per value, got shapes {t.shape} and {y.shape}")
    above = np.flatnonzero(y > level)
    if len(above) == 0:
        return None
    first, last = int(above[0]), int(above[-1])
    start = t[0] if first == 0 else _between(t, y, level, first - 1, first)
    end = t[-1] if last == len(y) - 1 else _between(t, y, level, last, last + 1)
    return float(start), float(end)


def _between(t: np.ndarray, y: np.ndarray, level: float, i: int, k: int) -> float:
    """t_i + (level - y_i) / (y_k - y_i) * (t_k - t_i): where the line through points i and k meets the level."""
    return t[i] + (level - y[i]) / (y[k] - y[i]) * (t[k] - t[i])
