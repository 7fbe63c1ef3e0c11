"""The tripartition of the pixel grid around a site: A (a pixel or k x k patch), the buffer B_r
(Chebyshev distance 1..r from A, clipped at the border) and C (everything farther than r)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phasediff.errors import PhasediffError


def default_site(shape: tuple[int, int]) -> tuple[int, int]:
    """The image centre (H // 2, W // 2): the centre pixel of an odd grid such as MNIST cropped to 27 x 27."""
    h, w = shape
    return h // 2, w // 2


def patch_bounds(site: tuple[int, int], patch: int) -> tuple[int, int, int, int]:
    """Rows y0..y1 and columns x0..x1 (inclusive) of the patch A: site +- (k - 1) // 2, extra row/col below/right."""
    y, x = site
    lo, hi = (patch - 1) // 2, patch // 2
    return y - lo, y + hi, x - lo, x + hi


def chebyshev_distance(shape: tuple[int, int], site: tuple[int, int], patch: int = 1) -> np.ndarray:
    """Chebyshev distance of every pixel to the patch A (0 inside A)."""
    h, w = shape
    y0, y1, x0, x1 = patch_bounds(site, patch)
    rows, cols = np.arange(h), np.arange(w)
    dy = np.maximum(np.maximum(y0 - rows, rows - y1), 0)
    dx = np.maximum(np.maximum(x0 - cols, cols - x1), 0)
    return np.maximum(dy[:, None], dx[None, :])


@dataclass(frozen=True)
class Tripartition:
    """Boolean (H, W) masks A, B, C that cover the grid exactly once."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    site: tuple[int, int]
    radius: int
    patch: int

    def sizes(self) -> dict[str, int]:
        return {"A": int(self.A.sum()), "B": int(self.B.sum()), "C": int(self.C.sum())}


def check_site(shape: tuple[int, int], site: tuple[int, int] | None, patch: int = 1) -> tuple[int, int]:
    """Validate a site (default: the centre) and the patch around it; return the site."""
    h, w = shape
    if patch < 1:
        raise PhasediffError(f"patch size must be >= 1, got {patch}")
    site = default_site(shape) if site is None else (int(site[0]), int(site[1]))
    if not (0 <= site[0] < h and 0 <= site[1] < w):
        raise PhasediffError(f"site {site[0]},{site[1]} lies outside the {h} x {w} image")
    y0, y1, x0, x1 = patch_bounds(site, patch)
    if y0 < 0 or x0 < 0 or y1 >= h or x1 >= w:
        raise PhasediffError(f"a {patch} x {patch} patch at {site[0]},{site[1]} does not fit the {h} x {w} image")
    return site


def tripartition(shape: tuple[int, int], radius: int, site: tuple[int, int] | None = None, patch: int = 1) -> Tripartition:
    """A, B_r, C around ``site``. C must keep at least one pixel, otherwise the CMI is trivially zero."""
    site = check_site(shape, site, patch)
    if int(radius) != radius or radius < 1:
        raise PhasediffError(f"radius r must be an integer >= 1, got {radius}")
    dist = chebyshev_distance(shape, site, patch)
    A, B, C = dist == 0, (dist >= 1) & (dist <= radius), dist > radius
    if not C.any():
        raise PhasediffError(
            f"the ring r={radius} around {site[0]},{site[1]} covers the whole {shape[0]} x {shape[1]} image: "
            f"C is empty (largest useful r here is {int(dist.max()) - 1})"
        )
    return Tripartition(A, B, C, site, int(radius), patch)
