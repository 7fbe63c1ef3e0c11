"""Markov length, peak time and nonlocality window of a CMI grid I_t(A:C|B_r).

- Markov length: for each t, weighted least squares of log I = log gamma - r / xi over the radii whose value
  is resolved (I > z * s.e., and I > 0), with weights I^2 / s.e.^2 (delta method: var log I = (s.e./I)^2).
  xi = -1 / slope; its interval maps the slope's interval (slope +- z s.e.), so it may be open (infinite)
  when the decay is not resolved.
- Peak time t*: the t that maximises I at a radius; interval from a parametric bootstrap of the grid.
- Nonlocality window for a threshold delta: t_start = inf{t : I_t > delta}, t_end = sup{t : I_t > delta},
  linearly interpolated between grid times; interval from the same bootstrap.
Exact grids (no standard errors) give point values with zero-width intervals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from phasediff.errors import PhasediffError
from phasediff.stats import Z95, crossings

EXACT_FLOOR = 1e-12
BOOTSTRAP_ROUNDS = 2000


@dataclass
class MarkovLength:
    """xi(t) with 95% intervals (None where fewer than two radii are resolved)."""

    t: list[float]
    xi: list[float | None]
    xi_low: list[float | None]
    xi_high: list[float | None]
    gamma: list[float | None]
    resolved_radii: list[list[int]]

    def to_dict(self) -> dict:
        return asdict(self)


def _errors(cmi: np.ndarray, stderr: np.ndarray | None) -> np.ndarray:
    return np.full_like(cmi, EXACT_FLOOR) if stderr is None else np.maximum(np.asarray(stderr, float), EXACT_FLOOR)


def resolved(cmi: np.ndarray, stderr: np.ndarray | None, z: float = 2.0) -> np.ndarray:
    """Points distinguishable from zero: I > z * s.e. (exact grids: I > 1e-12)."""
    cmi = np.asarray(cmi, float)
    return (cmi > z * _errors(cmi, stderr)) & (cmi > EXACT_FLOOR)


def _fit_decay(r: np.ndarray, value: np.ndarray, error: np.ndarray) -> tuple[float, float, float]:
    """(slope, its s.e., intercept) of weighted least squares log value = a + b r."""
    y, w = np.log(value), (value / error) ** 2
    design = np.stack([np.ones_like(r), r], axis=1)
    normal = design.T @ (design * w[:, None])
    coef = np.linalg.solve(normal, design.T @ (w * y))
    cov = np.linalg.inv(normal)
    if len(r) > 2:  # scale by the reduced chi-square when it is larger than 1 (misfit of the exponential)
        chi2 = float((w * (y - design @ coef) ** 2).sum()) / (len(r) - 2)
        cov = cov * max(1.0, chi2)
    return float(coef[1]), float(np.sqrt(cov[1, 1])), float(coef[0])


def _slope_to_xi(slope: float) -> float:
    return float("inf") if slope >= 0 else -1.0 / slope


def markov_length(t, r, cmi, stderr=None, z: float = 2.0) -> MarkovLength:
    """Fit xi(t) from the decay of I_t(A:C|B_r) with r at every t."""
    r = np.asarray(r, float)
    cmi = np.asarray(cmi, float)
    if cmi.shape != (len(t), len(r)):
        raise PhasediffError(f"cmi must have shape ({len(t)}, {len(r)}), got {cmi.shape}")
    errors = _errors(cmi, stderr)
    ok = resolved(cmi, stderr, z)
    out = MarkovLength(list(map(float, t)), [], [], [], [], [])
    for i in range(len(t)):
        keep = ok[i]
        out.resolved_radii.append([int(v) for v in r[keep]])
        if keep.sum() < 2:
            for field in (out.xi, out.xi_low, out.xi_high, out.gamma):
                field.append(None)
            continue
        slope, slope_err, intercept = _fit_decay(r[keep], cmi[i, keep], errors[i, keep])
        out.xi.append(_slope_to_xi(slope))
        out.xi_low.append(_slope_to_xi(slope - Z95 * slope_err))
        out.xi_high.append(_slope_to_xi(slope + Z95 * slope_err))
        out.gamma.append(float(np.exp(intercept)))
    return out


def _bootstrap(curve: np.ndarray, error: np.ndarray | None, seed: int) -> np.ndarray:
    """(rounds, len(curve)) draws of a curve from N(value, s.e.^2); a single exact copy without errors."""
    if error is None:
        return curve[None, :]
    rng = np.random.default_rng(seed)
    return curve[None, :] + rng.standard_normal((BOOTSTRAP_ROUNDS, len(curve))) * np.asarray(error)[None, :]


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None, None
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)


def peak_time(t, curve, error=None, seed: int = 0) -> dict:
    """t* = argmax_t I_t at one radius, with a bootstrap 95% interval."""
    t = np.asarray(t, float)
    draws = _bootstrap(np.asarray(curve, float), error, seed)
    peaks = t[np.argmax(draws, axis=1)]
    lo, hi = _interval(peaks)
    return {"t_peak": float(t[np.argmax(curve)]), "low": lo, "high": hi}


def _window(t: np.ndarray, curve: np.ndarray, delta: float) -> tuple[float, float]:
    """`phasediff.stats.crossings` of delta, (NaN, NaN) if the curve never exceeds it."""
    return crossings(t, curve, delta) or (float("nan"), float("nan"))


def nonlocality_window(t, curve, delta: float, error=None, seed: int = 0) -> dict:
    """[t_start, t_end] where I_t > delta at one radius, with bootstrap 95% intervals of both ends."""
    if not delta > 0:
        raise PhasediffError(f"the window threshold delta must be > 0, got {delta}")
    t = np.asarray(t, float)
    curve = np.asarray(curve, float)
    start, end = _window(t, curve, delta)
    draws = np.array([_window(t, c, delta) for c in _bootstrap(curve, error, seed)])
    (s_lo, s_hi), (e_lo, e_hi) = _interval(draws[:, 0]), _interval(draws[:, 1])
    found = np.isfinite(start)
    return {"delta": delta, "t_start": start if found else None, "t_end": end if found else None,
            "t_start_low": s_lo, "t_start_high": s_hi, "t_end_low": e_lo, "t_end_high": e_hi,
            "fraction_of_draws_above": float(np.isfinite(draws[:, 0]).mean())}


def summarise(t, r, cmi, stderr=None, delta: float = 0.005, seed: int = 0) -> dict:
    """Markov lengths, and the peak time and window of the smallest radius, as plain data."""
    cmi = np.asarray(cmi, float)
    first_err = None if stderr is None else np.asarray(stderr, float)[:, 0]
    return {
        "markov_length": markov_length(t, r, cmi, stderr).to_dict(),
        "radius": int(r[0]),
        "peak": peak_time(t, cmi[:, 0], first_err, seed),
        "window": nonlocality_window(t, cmi[:, 0], delta, first_err, seed),
    }
