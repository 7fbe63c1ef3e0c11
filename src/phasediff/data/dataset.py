"""The one dataset type: float32 images (N, C, H, W) in [0, 1] (or real-valued for synthetic fields),
optional integer labels, a provenance string, and the exact model behind synthetic data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phasediff.errors import PhasediffError

MAX_LABEL = 100_000  # labels are class indices 0..MAX_LABEL: code that sizes a table by the largest label stays small


def as_images(array: Any, source: str) -> np.ndarray:
    """Validate and convert an image array to float32 (N, C, H, W).

    uint8 is divided by 255 (as in the paper); floats are taken as they are; (N, H, W) gains a channel axis.
    """
    array = np.asarray(array)
    if array.dtype == np.uint8:
        images = array.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        images = array.astype(np.float32)
    else:
        raise PhasediffError(f"{source}: images must be numeric, got dtype {array.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise PhasediffError(f"{source}: images must have shape (N, H, W) or (N, C, H, W), got {array.shape}")
    if min(images.shape) < 1:
        raise PhasediffError(f"{source}: empty image array of shape {array.shape}")
    if not np.isfinite(images).all():
        raise PhasediffError(f"{source}: images contain NaN or infinite values")
    return np.ascontiguousarray(images)


def as_labels(labels: Any, n: int, source: str) -> np.ndarray | None:
    """Validate optional labels: one integer in 0..MAX_LABEL per image."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise PhasediffError(f"{source}: labels must have shape ({n},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise PhasediffError(f"{source}: labels must be integers")
    if labels.min() < 0 or labels.max() > MAX_LABEL:
        raise PhasediffError(f"{source}: labels must lie in 0..{MAX_LABEL}, found {labels.min():g}..{labels.max():g}")
    return labels.astype(np.int64)


@dataclass(frozen=True)
class Dataset:
    """Images (N, C, H, W) float32, labels (N,) int64 or None, provenance, and the exact model if synthetic."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    model: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        images = as_images(self.images, self.source)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", as_labels(self.labels, len(images), self.source))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def subset(self, n: int | None) -> "Dataset":
        """The first n images (all if n is None)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise PhasediffError(f"{self.source}: n must be >= 1, got {n}")
        labels = None if self.labels is None else self.labels[:n]
        return Dataset(self.images[:n], labels, self.source, self.model)

    def center_crop(self, size: int) -> "Dataset":
        """Crop every image to size x size around its centre (offset (H - size) // 2).

        The exact model of a synthetic dataset describes the full grid, so the crop drops it.
        """
        _, h, w = self.shape
        if not 1 <= size <= min(h, w):
            raise PhasediffError(f"{self.source}: crop {size} does not fit images of {h} x {w}")
        top, left = (h - size) // 2, (w - size) // 2
        images = self.images[:, :, top : top + size, left : left + size]
        return Dataset(images, self.labels, f"{self.source}, centre crop {size}x{size}")

    def info(self) -> dict:
        """Summary statistics: n, shape, min, max, mean, std, classes, source."""
        x = self.images
        classes = None if self.labels is None else int(len(np.unique(self.labels)))
        return {
            "n": int(len(x)),
            "shape": [int(s) for s in x.shape[1:]],
            "min": float(x.min()),
            "max": float(x.max()),
            "mean": float(x.mean(dtype=np.float64)),
            "std": float(x.std(dtype=np.float64)),
            "classes": classes,
            "source": self.source,
        }
