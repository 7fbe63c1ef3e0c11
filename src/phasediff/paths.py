"""Noise paths: the interpolation path of the paper and its conversions to other parameterisations.

The reference path (t = 0 is data, t = 1 is pure noise)::

    x_t = (1 - t) x_0 + t z,   z ~ N(0, I),   snr(t) = (1 - t)^2 / t^2.

Any other Gaussian path x = a x_0 + s z has snr = a^2 / s^2 and equals the reference path at
t = s / (a + s), up to the scale factor a + s: x_t = x / (a + s). This module is the only place where
such formulas live.
"""

from __future__ import annotations

import numpy as np

from phasediff.errors import PhasediffError

# DDPM (Ho et al. 2020) linear beta schedule and the cosine schedule (Nichol & Dhariwal 2021).
DDPM_STEPS, DDPM_BETA_START, DDPM_BETA_END = 1000, 1e-4, 0.02
COSINE_OFFSET = 0.008


def check_times(t, what: str = "t") -> np.ndarray:
    """Return t as a float64 array, refusing values outside [0, 1] or not finite."""
    arr = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise PhasediffError(f"{what} must lie in [0, 1], got {np.atleast_1d(arr).tolist()[:6]}")
    return arr


def add_noise(x0, t, z):
    """x_t = (1 - t) x_0 + t z (arrays or tensors; t broadcast against x0)."""
    return (1 - t) * x0 + t * z


def signal_scale(t):
    """alpha(t) = 1 - t, the weight of the data in x_t."""
    return 1 - t


def noise_scale(t):
    """sigma(t) = t, the weight of the noise in x_t."""
    return t


def snr(t):
    """snr(t) = (1 - t)^2 / t^2 (infinite at t = 0)."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return (1 - t) ** 2 / t**2


def t_from_snr(value):
    """Inverse of snr: t = 1 / (1 + sqrt(snr))."""
    value = np.asarray(value, dtype=np.float64)
    if np.any(value < 0):
        raise PhasediffError("snr must be >= 0")
    return 1.0 / (1.0 + np.sqrt(value))


def t_from_vp(alpha_bar):
    """VP path x = sqrt(abar) x_0 + sqrt(1 - abar) z  ->  t = sqrt(1 - abar) / (sqrt(abar) + sqrt(1 - abar))."""
    alpha_bar = check_times(alpha_bar, "alpha_bar")
    a, s = np.sqrt(alpha_bar), np.sqrt(1 - alpha_bar)
    return s / (a + s)


def vp_from_t(t):
    """Inverse of t_from_vp: abar = (1 - t)^2 / ((1 - t)^2 + t^2)."""
    t = check_times(t)
    return (1 - t) ** 2 / ((1 - t) ** 2 + t**2)


def vp_to_path_scale(alpha_bar):
    """Factor that maps a VP sample onto the reference path: x_t = x_vp / (sqrt(abar) + sqrt(1 - abar))."""
    alpha_bar = check_times(alpha_bar, "alpha_bar")
    return 1.0 / (np.sqrt(alpha_bar) + np.sqrt(1 - alpha_bar))


def t_from_edm_sigma(sigma):
    """EDM / variance-exploding x = x_0 + sigma z  ->  t = sigma / (1 + sigma)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    if np.any(np.isnan(sigma)) or np.any(sigma < 0):
        raise PhasediffError("sigma must be >= 0")
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(sigma), 1.0, sigma / (1.0 + sigma))


def edm_sigma_from_t(t):
    """Inverse of t_from_edm_sigma: sigma = t / (1 - t) (infinite at t = 1); x_edm = x_t / (1 - t)."""
    t = check_times(t)
    with np.errstate(divide="ignore"):
        return t / (1 - t)


def ddpm_alpha_bar(steps: int = DDPM_STEPS, beta_start: float = DDPM_BETA_START, beta_end: float = DDPM_BETA_END):
    """Discrete DDPM schedule: abar_i = prod_{j <= i} (1 - beta_j), beta linear from beta_start to beta_end."""
    betas = np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def cosine_alpha_bar(s, offset: float = COSINE_OFFSET):
    """Cosine schedule: abar(s) = f(s) / f(0), f(s) = cos((s + offset) / (1 + offset) * pi / 2)^2, s in [0, 1]."""
    s = check_times(s, "s")
    f = np.cos((s + offset) / (1 + offset) * np.pi / 2) ** 2
    f0 = np.cos(offset / (1 + offset) * np.pi / 2) ** 2
    return np.clip(f / f0, 0.0, 1.0)


def noised_covariance(cov0: np.ndarray, t: float) -> np.ndarray:
    """Covariance of x_t for data covariance S_0: (1 - t)^2 S_0 + t^2 I."""
    return (1 - t) ** 2 * cov0 + t**2 * np.eye(cov0.shape[0])
