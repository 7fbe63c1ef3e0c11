"""The noise path of the paper (t = 0 is data, t = 1 is pure noise)::

    x_t = alpha(t) x_0 + sigma(t) z,   alpha(t) = 1 - t,   sigma(t) = t,   z ~ N(0, I).

This module is the only place where the path's formulas live: the noised sample, the (co)variance of
x_t for data of (co)variance S_0, alpha(t)^2 S_0 + sigma(t)^2 I, and the conversions to other models' time:

- variance preserving (VP, DDPM / DiT): x = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) z is our x_t times
  c = 1 / sqrt((1 - t)^2 + t^2), with the same z, at the alpha_bar whose noise-to-signal ratio is t / (1 - t);
  a discrete schedule (a table alpha_bar_k, k = 0 .. K - 1) is evaluated at a fractional index k(t);
- rectified flow (SD3): x = (1 - sigma) x_0 + sigma z is our path with sigma = t, at timestep N t.
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


def vp_alpha_bar(t):
    """alpha_bar = (1 - t)^2 / ((1 - t)^2 + t^2): the VP schedule value whose noise-to-signal ratio
    sqrt((1 - alpha_bar) / alpha_bar) equals t / (1 - t)."""
    return signal_scale(t) ** 2 / (signal_scale(t) ** 2 + noise_scale(t) ** 2)


def time_from_vp_alpha_bar(alpha_bar):
    """t = sqrt(1 - alpha_bar) / (sqrt(alpha_bar) + sqrt(1 - alpha_bar)), the inverse of `vp_alpha_bar`."""
    return (1 - alpha_bar) ** 0.5 / (alpha_bar ** 0.5 + (1 - alpha_bar) ** 0.5)


def vp_input_scale(t):
    """c = 1 / sqrt((1 - t)^2 + t^2): c x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) z with the same z, at
    alpha_bar = vp_alpha_bar(t)."""
    return 1 / (signal_scale(t) ** 2 + noise_scale(t) ** 2) ** 0.5


def linear_beta_alpha_bars(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """alpha_bar_k = prod_{i <= k} (1 - beta_i), k = 0 .. steps - 1, with beta_i linear from beta_start to beta_end:
    the discrete VP schedule of DDPM and DiT (the defaults are theirs)."""
    if steps < 2 or not 0 < beta_start <= beta_end < 1:
        raise PhasediffError(f"need steps >= 2 and 0 < beta_start <= beta_end < 1, "
                             f"got {steps}, {beta_start}, {beta_end}")
    return np.cumprod(1 - np.linspace(beta_start, beta_end, steps, dtype=np.float64))


def check_alpha_bars(alpha_bars) -> np.ndarray:
    """A discrete VP schedule as a float64 array: at least two values in (0, 1), strictly decreasing."""
    table = np.asarray(alpha_bars, dtype=np.float64)
    if (table.ndim != 1 or len(table) < 2 or not np.all(np.isfinite(table)) or np.any(table <= 0)
            or np.any(table >= 1) or np.any(np.diff(table) >= 0)):
        raise PhasediffError("alpha_bars must be a 1-D table of at least two values in (0, 1), strictly decreasing")
    return table


def vp_timestep(t, alpha_bars) -> np.ndarray:
    """The fractional index k of a discrete VP schedule at our time t: linear in t between the entries, whose times
    t_k = time_from_vp_alpha_bar(alpha_bar_k) increase with k; clipped to [0, K - 1] outside [t_0, t_{K-1}]."""
    table_times = time_from_vp_alpha_bar(check_alpha_bars(alpha_bars))
    return np.interp(check_times(t), table_times, np.arange(len(table_times), dtype=np.float64))


def time_from_vp_timestep(timestep, alpha_bars) -> np.ndarray:
    """Our time t at a fractional index k of a discrete VP schedule, the inverse of `vp_timestep` on [0, K - 1]."""
    table = check_alpha_bars(alpha_bars)
    steps = np.asarray(timestep, dtype=np.float64)
    if not np.all(np.isfinite(steps)) or np.any(steps < 0) or np.any(steps > len(table) - 1):
        raise PhasediffError(f"a timestep of this schedule must lie in [0, {len(table) - 1}]")
    return np.interp(steps, np.arange(len(table), dtype=np.float64), time_from_vp_alpha_bar(table))


def flow_timestep(t, num_train_timesteps: int = 1000):
    """timestep = N t: a rectified-flow model (SD3: x = (1 - sigma) x_0 + sigma z, timestep N sigma) has sigma = t."""
    return num_train_timesteps * t


def time_from_flow_timestep(timestep, num_train_timesteps: int = 1000):
    """t = timestep / N, the inverse of `flow_timestep`."""
    return timestep / num_train_timesteps
