"""The noise path of the paper (t = 0 is data, t = 1 is pure noise)::

    x_t = alpha(t) x_0 + sigma(t) z,   alpha(t) = 1 - t,   sigma(t) = t,   z ~ N(0, I).

This module is the only place where the path's formulas live: the noised sample, and the (co)variance of
x_t for data of (co)variance S_0, alpha(t)^2 S_0 + sigma(t)^2 I.
"""

from __future__ import annotations

import numpy as np

from phasediff.errors import PhasediffError


def check_times(t, what: str = "t") -> np.ndarray:
    """Return t as a float64 array, refusing values outside [0, 1] or not finite."""
    arr = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise PhasediffError(f"{what} must lie in [0, 1], got {np.atleast_1d(arr).tolist()[:6]}")
    return arr


def signal_scale(t):
    """alpha(t) = 1 - t, the weight of the data in x_t."""
    return 1 - t


def noise_scale(t):
    """sigma(t) = t, the weight of the noise in x_t."""
    return t


def add_noise(x0, t, z):
    """x_t = (1 - t) x_0 + t z (arrays or tensors; t broadcast against x0)."""
    return signal_scale(t) * x0 + noise_scale(t) * z


def noised_variance(var0, t):
    """Variance of x_t for data of variance var0, elementwise: (1 - t)^2 var0 + t^2."""
    return signal_scale(t) ** 2 * var0 + noise_scale(t) ** 2


def noised_covariance(cov0: np.ndarray, t: float) -> np.ndarray:
    """Covariance of x_t for data covariance S_0: (1 - t)^2 S_0 + t^2 I."""
    return signal_scale(t) ** 2 * cov0 + noise_scale(t) ** 2 * np.eye(cov0.shape[0])
