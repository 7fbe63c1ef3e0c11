"""Concurrence: does generation commit to a class (symmetry breaking, t_SB) when local denoising fails
(nonlocality, t_NL)? Every measure of both on one t grid, each time with a 95% interval, and t_SB - t_NL.

Symmetry breaking (`speciation`): forward-backward P(kept | t) for the probability-flow ODE and the ancestral
sampler with t_SB where P(kept) falls halfway to chance, and the spectral t_S (exact Lambda of the model when it
has one; the empirical covariance of the test images, with a bootstrap interval).

Nonlocality, for each local radius r (the local denoiser D_r against the global D on the same x_t):

- Locality gap, x_0 units: G_0(t) = E |D_r(x_t) - D(x_t)|^2 / pixels on the forward process (`diagnostics.gap`:
  same seeded noise, same per-pixel mean). Score units: on x_t = (1 - t) x_0 + t z the score is
  s(x_t) = -(x_t - (1 - t) x0_hat) / t^2, so s_r - s = ((1 - t) / t^2) (D_r - D) and the per-pixel mean squared
  score difference (the paper's Delta_loc^2 for a one-pixel A, averaged over the sites) is
  G_s(t) = ((1 - t) / t^2)^2 G_0(t). Both are reported per pixel, squared (x_0 units^2 and score units^2).
- Recovery (`diagnostics.recovery`, the paper's protocol: noise to T_f, Euler back to 0 with D_r alone,
  per-pixel MSE against x_0): the first T_f where the MSE reaches the paper's level 0.03, and the excess
  MSE_r - MSE_global of the same noised images (paired). The 0.03 threshold is reported because it is the
  module's t; on data whose within-class detail alone exceeds 0.03 (gmm2 with sigma = 1: the global model
  reaches it at T_f ~ 0.12) it marks that detail, not locality, and the global model's own threshold is
  listed beside it. The excess is what locality costs.
- The exact CMI I_t(A:C|B_r) for A the centre k x k patch and B_r its ring of radius r (`info.cmi.measure_cmi`,
  estimator "exact"; gmm2: the Gauss-Hermite closed form, which depends on the regions' sizes only, so a patch
  costs what a pixel costs).
- Sliding window: generation from pure noise with the schedule "a:a+w=global,local" (`denoisers.schedule`),
  Euler, for window starts a on a grid; each sample is judged by ``valid`` (gmm2: `gmm2_class_check`).

Which t_NL, and why the peak: for the gap (both units), the recovery excess and the CMI, t_NL is the time of
the curve's maximum, the vertex of the parabola through the largest grid value and its two neighbours (a grid
end when the maximum sits there; flagged). A peak needs no level: a crossing of a level depends on the level's
units, and G_0 and G_s differ by a factor that runs from 10^-4 to 10^5 over t in [0.05, 0.99], so no one level
means the same in both; the CMI's transition (a diverging Markov length) is also defined by its peak. A peak is not invariant
under a t-dependent rescaling, which is why both units are reported: they peak at different t. The 0.03
recovery threshold is a crossing (the paper's own definition). The sliding window's t_NL is the midpoint of the
span of window centres whose accuracy exceeds halfway between the worst and the best window (robust where several
windows reach the top, where an argmax would be arbitrary); None unless the best window reaches ``MIN_ACCURACY``
and the worst does not. If the needed stretch of global steps is [t_lo, t_hi] and w >= t_hi - t_lo, the windows
that work have centres in [t_hi - w / 2, t_lo + w / 2], whose midpoint is (t_lo + t_hi) / 2 whatever w; windows
cannot reach past t = 1, so a span that runs to the last window (flagged "at_edge") is cut there and its
midpoint is biased low. Peaks found on a grid carry a discretisation error that the bootstrap does not see:
``exact_grid`` is the same estimator applied to the exact curve on the same grid (gmm2), so that a measured peak
can be compared with what the grid allows and the exact peak with what the grid costs.

Intervals: percentile bootstrap (``resamples`` resamples, 95%). The forward-backward curves, the gap and the
recovery share the test images and the noise of each t (`stats.seeded_noise(shape, seed, index of t)`, as in
the modules they reuse), so they are resampled together: image j gets the same multinomial weight in every
measure of one bootstrap draw (the weights of `speciation.bootstrap_t_sb`, so its t_SB intervals are
reproduced). The sliding window's samples are independent of the test images and are resampled with their own
weights; the exact quantities (CMI peaks, exact t_S) have no sampling error (interval = the value). t_SB - t_NL is
computed on every bootstrap draw and its interval is the percentile interval of those differences: this is the
bootstrap, not a sum in quadrature, so the correlation of paired measures is kept. An end of an interval that
depends on draws whose time is off the grid (t_SB never reached) is None (open).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import ndtri

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.diagnostics.recovery import (
    DEFAULT_LEVEL,
    check_batch_size,
    check_images,
    recovery_steps,
)
from phasediff.diagnostics.speciation import (
    BOOTSTRAP,
    METHODS,
    Classify,
    Speciation,
    _spectral_time,
    check_ts,
    forward_backward,
    gmm2_reference,
    gmm2_top_eigenvalue,
    kept_curve,
    t_sb,
    top_eigenvalue,
)
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise, noised_variance, signal_scale
from phasediff.progress import progress
from phasediff.sampling import euler, sample, time_grid
from phasediff.stats import crossings, mean_interval, seeded_noise, wilson_interval

DEFAULT_PATCHES = (1, 3, 5, 7)
DEFAULT_WIDTHS = (0.2,)
DEFAULT_WINDOW_STEP = 0.05
CLASS_ALPHA = 1e-3  # gmm2_class_check: a true sample of the data fails with this probability
MIN_ACCURACY = 0.5  # the sliding window's t_NL needs one window at least this accurate
DENSE_GRID = 2001  # exact curves: dense grid for the maximum before the bounded refinement
GAP_NODES = 200  # Gauss-Hermite nodes per dimension of the exact gmm2 gap
FD_SKIPPED_GMM2 = ("no judge network: the Frechet distance is taken in the features of the project's classifier, "
                   "which gmm2 does not have; its class is a sign")


# --- units ---------------------------------------------------------------------------------------------------

def score_factor(t):
    """(1 - t) / t^2: a difference of x0_hat's times this is the difference of the scores
    s(x_t) = -(x_t - (1 - t) x0_hat) / t^2 (at the same x_t). Squared per-pixel gaps scale by its square."""
    t = np.asarray(t, dtype=np.float64)
    if np.any(t <= 0) or np.any(t > 1):
        raise PhasediffError("the score is defined for t in (0, 1]")
    return signal_scale(t) / t**2


# --- peaks ---------------------------------------------------------------------------------------------------

def peak_times(t, y) -> tuple[np.ndarray, np.ndarray]:
    """(peak time, at an end of the grid) for each column of y (T,) or (T, B) over the increasing grid t: the
    vertex of the parabola through the grid maximum and its two neighbours (non-uniform spacing), kept within
    those neighbours; the end itself when the maximum is the first or last grid value."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    flat = y.ndim == 1
    y = y[:, None] if flat else y
    if t.ndim != 1 or len(t) != len(y) or len(t) < 1:
        raise PhasediffError(f"peak_times needs one time per row, got {t.shape} and {y.shape}")
    i = np.argmax(y, axis=0)
    edge = (i == 0) | (i == len(t) - 1)
    peak = t[i].copy()
    inner = np.flatnonzero(~edge)
    if len(inner):
        k = i[inner]
        t0, t1, t2 = t[k - 1], t[k], t[k + 1]
        y0, y1, y2 = y[k - 1, inner], y[k, inner], y[k + 1, inner]
        # y = A t^2 + B t + C through the three points; vertex -B / 2A (A < 0 at a strict maximum)
        denom = (t0 - t1) * (t0 - t2) * (t1 - t2)
        a = (t2 * (y1 - y0) + t1 * (y0 - y2) + t0 * (y2 - y1)) / denom
        b = (t2**2 * (y0 - y1) + t1**2 * (y2 - y0) + t0**2 * (y1 - y2)) / denom
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(a < 0, -b / (2 * a), t1)
        peak[inner] = np.clip(vertex, t0, t2)
    return (peak[0], edge[0]) if flat else (peak, edge)


def _dense_peak(fn: Callable[[np.ndarray], np.ndarray], lo: float = 1e-3, hi: float = 1 - 1e-6) -> float:
    """The maximiser of a smooth curve on [lo, hi]: the best point of a dense grid, refined by a bounded search
    between its neighbours (to ~1e-9 in t)."""
    grid = np.linspace(lo, hi, DENSE_GRID)
    values = fn(grid)
    i = int(np.argmax(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    found = minimize_scalar(lambda s: -float(fn(np.array([s]))[0]), bounds=(a, b), method="bounded",
                            options={"xatol": 1e-10})
    return float(found.x) if -found.fun >= values[i] else float(grid[i])


# --- exact gmm2 references -----------------------------------------------------------------------------------

def square_sizes(L: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, counts): the sizes of the Chebyshev squares of radius r clipped at the border of an L x L grid
    (what `TwoComponentDenoiser` of that radius sums over), and how many pixels have each."""
    idx = np.arange(L)
    width = np.minimum(idx + radius, L - 1) - np.maximum(idx - radius, 0) + 1
    return np.unique((width[:, None] * width[None, :]).ravel(), return_counts=True)


def gmm2_gap(model: TwoComponentMixture, radius: int, t) -> np.ndarray:
    """Exact locality gap of gmm2 in x_0 units (per pixel, squared) between the exact local denoiser of
    ``radius`` and the global one, on the forward process.

    D_i - D_r,i = mu (t^2 / v) [tanh(a mu S / v) - tanh(a mu S_R / v)] (a = 1 - t, v = a^2 sigma^2 + t^2, S the
    image sum, S_R the sum over pixel i's clipped square of m pixels). Given s = +1 (s = -1 is the mirror image),
    a mu S_R / v = K_m^2 + K_m z_1 and a mu S / v = K_n^2 + K_m z_1 + K_{n-m} z_2 with z_1, z_2 independent
    N(0, 1) and K_m = a |mu| sqrt(m / v) (the K of `TwoComponentMixture`), so

        G_0(t) = mu^2 (t^2 / v)^2 mean_i E[(tanh(K_n^2 + K_m z_1 + K_{n-m} z_2) - tanh(K_m^2 + K_m z_1))^2],

    a 2-D Gauss-Hermite sum (GAP_NODES per dimension) for each square size."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    n = model.L**2
    sizes, counts = square_sizes(model.L, radius)
    nodes, weights = np.polynomial.hermite_e.hermegauss(GAP_NODES)
    w2 = np.outer(weights, weights) / weights.sum() ** 2
    z1, z2 = nodes[:, None], nodes[None, :]
    out = np.zeros(len(t))
    for k, tk in enumerate(t):
        total = 0.0
        for m, count in zip(sizes, counts):
            if m >= n:
                continue
            km, kr = model.K(tk, m), model.K(tk, n - m)
            diff = np.tanh(km**2 + kr**2 + km * z1 + kr * z2) - np.tanh(km**2 + km * z1)
            total += count * float((w2 * diff**2).sum())
        v = noised_variance(model.sigma**2, tk)
        out[k] = model.mu**2 * (tk**2 / v) ** 2 * total / n
    return out


def gmm2_gap_peaks(model: TwoComponentMixture, radius: int) -> dict[str, float]:
    """The exact times of the maximum of the gap in x_0 units and in score units."""
    x0 = lambda t: gmm2_gap(model, radius, t)
    return {"x0": _dense_peak(x0), "score": _dense_peak(lambda t: score_factor(t) ** 2 * x0(t), lo=0.05)}


def gmm2_cmi_peak(model: TwoComponentMixture, sizes: Mapping[str, int]) -> float:
    """The exact time of the maximum of I_t(A:C|B) for regions of these sizes."""
    return _dense_peak(lambda t: model.cmi(t, sizes["A"], sizes["B"], sizes["C"]))


def gmm2_class_check(model: TwoComponentMixture, alpha: float = CLASS_ALPHA) -> Callable[[torch.Tensor], np.ndarray]:
    """The judge of a generated gmm2 image: it belongs to a class when the class rule's class s (the sign of its
    mean, `speciation.sign_classes`) is one it is a typical member of, |mean - s mu| <= z sigma / sqrt(n) with
    z = Phi^{-1}(1 - alpha / 2): a sample of the data passes with probability 1 - alpha (given s its mean is
    N(s mu, sigma^2 / n)); an image made of domains of both signs, which the sign alone would classify, fails.
    Unconditional generation has no target class, so this is its class accuracy."""
    z = float(ndtri(1 - alpha / 2))
    half = z * model.sigma / model.L

    def check(images) -> np.ndarray:
        mean = torch.as_tensor(images).flatten(1).double().mean(1).cpu().numpy()
        return np.abs(np.abs(mean) - abs(model.mu)) <= half

    return check


# --- paired measurements on the test images ------------------------------------------------------------------

def gap_per_image(global_denoiser, local: Mapping[int, object], images, ts: Sequence[float], seed: int = 0,
                  batch_size: int = 500, device: str | torch.device = "cpu") -> np.ndarray:
    """(T, R, N) per-image locality gaps in x_0 units, radii in the order of ``local``; x_t as in
    `gap.forward_gap` (noise `seeded_noise(shape, seed, i)` for time i), so its mean is that function's gap."""
    images = check_images(images)
    out = np.zeros((len(ts), len(local), len(images)))
    bar = progress(total=len(ts), desc="locality gap")
    with torch.no_grad():
        for i, t in enumerate(ts):
            noise = seeded_noise(tuple(images.shape), seed, i)
            for b in range(0, len(images), batch_size):
                x = add_noise(images[b:b + batch_size], t, noise[b:b + batch_size]).to(device)
                tt = torch.full((len(x),), t, dtype=x.dtype, device=x.device)
                ref = global_denoiser(x, tt).double()
                for j, d in enumerate(local.values()):
                    out[i, j, b:b + len(x)] = (d(x, tt).double() - ref).square().flatten(1).mean(1).cpu().numpy()
            bar.update()
    bar.close()
    if not np.all(np.isfinite(out)):
        raise PhasediffError("a denoiser returned NaN or infinite values in the locality gap")
    return out


def recovery_per_image(denoisers: Sequence, images, ts: Sequence[float], steps_per_unit: float = 32.0, seed: int = 0,
                       batch_size: int = 500, device: str | torch.device = "cpu") -> np.ndarray:
    """(T, D, N) per-image recovery MSE of each denoiser (the protocol of `recovery.recovery_diagram`, same
    noise and step counts: its mse is the mean of this over images)."""
    images = check_images(images)
    out = np.zeros((len(ts), len(denoisers), len(images)))
    bar = progress(total=len(ts) * len(denoisers), desc="recovery")
    with torch.no_grad():
        for i, t in enumerate(ts):
            noise = seeded_noise(tuple(images.shape), seed, i)
            times = time_grid(recovery_steps(t, steps_per_unit, None), t_max=t, t_min=0.0)
            for j, d in enumerate(denoisers):
                for b in range(0, len(images), batch_size):
                    x0 = images[b:b + batch_size].to(device)
                    back = euler(d, add_noise(x0, t, noise[b:b + batch_size].to(device)), times)
                    out[i, j, b:b + len(x0)] = (back.to(x0.dtype) - x0).square().flatten(1).mean(1).double().cpu()
                bar.update()
    bar.close()
    if not np.all(np.isfinite(out)):
        raise PhasediffError("a denoiser returned NaN or infinite values in the recovery")
    return out


def sliding_window(global_denoiser, local_denoiser, valid: Callable, n: int, shape: Sequence[int],
                   starts: Sequence[float], width: float, steps: int = 64, seed: int = 0, batch_size: int = 500,
                   device: str = "cpu") -> np.ndarray:
    """(A, n) whether each of n samples generated with "a:a+w=global,local" (Euler, ``steps`` from t = 1) passes
    ``valid``, for each window start a. Every schedule starts from the same noise (``sample``'s seed)."""
    from phasediff.denoisers.schedule import Schedule

    out = np.zeros((len(starts), n), dtype=bool)
    for k, a in enumerate(progress(starts, desc=f"sliding window (w = {width:g})")):
        hi = min(1.0, round(a + width, 10))
        schedule = Schedule.parse(f"{a:.10g}:{hi:.10g}=global,local")
        denoiser = schedule.build({"global": global_denoiser, "local": local_denoiser})
        out[k] = valid(sample(denoiser, n, tuple(shape), steps=steps, seed=seed, batch_size=batch_size,
                              device=device))
    return out


# --- bootstrap -----------------------------------------------------------------------------------------------

def image_weights(n: int, seed: int, resamples: int, stream: int = 7) -> np.ndarray:
    """(resamples, n) multinomial resample counts; stream 7 is `speciation.bootstrap_t_sb`'s."""
    rng = np.random.default_rng([int(seed), stream])
    return rng.multinomial(n, np.full(n, 1 / n), size=resamples)


def _resampled(per_item: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T, B) bootstrap means of per_item (T, N)."""
    return per_item @ weights.T / per_item.shape[1]


def _interval(draws: np.ndarray) -> tuple[float | None, float | None]:
    """95% percentile interval (inverted CDF) of draws; +-inf are kept in order (open ends -> None); NaN draws
    (no value on that resample) count against both ends: more than 2.5% NaN opens the interval."""
    draws = np.asarray(draws, dtype=np.float64)
    if np.mean(np.isnan(draws)) > 0.025:
        return None, None
    ends = np.quantile(draws[~np.isnan(draws)], [0.025, 0.975], method="inverted_cdf")
    return tuple(float(e) if np.isfinite(e) else None for e in ends)


def _t_sb_draws(ts, kept: np.ndarray, level: float, weights: np.ndarray) -> np.ndarray:
    """t_SB on every resample; +inf where the resampled curve never falls below the level on the grid."""
    curves = _resampled(kept.astype(float), weights)
    return np.array([np.inf if (v := t_sb(ts, curves[:, b], level)) is None else v for b in range(len(weights))])


def _spectral_draws(images: torch.Tensor, weights: np.ndarray, iterations: int = 200,
                    tol: float = 1e-10) -> np.ndarray:
    """t_S of the empirical covariance (ddof 1, as `speciation.top_eigenvalue`) on every resample: batched power
    iteration from the full sample's top eigenvector."""
    x = images.double().flatten(1).numpy()
    n = len(x)
    centred = x - x.mean(0)
    gram = centred.T @ centred if x.shape[1] <= n else centred @ centred.T
    _, vecs = np.linalg.eigh(gram)
    top = vecs[:, -1] if x.shape[1] <= n else centred.T @ vecs[:, -1]
    v = np.repeat((top / np.linalg.norm(top))[:, None], len(weights), axis=1)  # (D, B)
    w = weights.T.astype(np.float64)  # (N, B)
    means = (x.T @ w) / n  # (D, B)
    lam = np.zeros(len(weights))
    for _ in range(iterations):
        proj = x @ v - (means * v).sum(0)  # (N, B): (x_j - m_b) . v_b
        u = (x.T @ (w * proj) - means * (w * proj).sum(0)) / (n - 1)  # C_b v_b
        new = np.linalg.norm(u, axis=0)
        v = u / new
        done = np.max(np.abs(new - lam) / new) < tol
        lam = new
        if done:
            break
    return np.array([_spectral_time(value) for value in lam])


def _window_span(centres: np.ndarray, accuracy: np.ndarray) -> tuple[float, float] | None:
    """The span of window centres whose accuracy exceeds halfway between the worst and the best window (linear
    between windows, `stats.crossings`); None unless the best window reaches MIN_ACCURACY and the worst does not
    (no window makes the local sampler generate the data, or the local sampler needs none)."""
    best, worst = float(np.max(accuracy)), float(np.min(accuracy))
    if best < MIN_ACCURACY or worst >= MIN_ACCURACY:
        return None
    return crossings(centres, accuracy, (best + worst) / 2)


def _window_centre(centres: np.ndarray, accuracy: np.ndarray) -> float:
    """The midpoint of `_window_span`, NaN where it is None."""
    span = _window_span(centres, accuracy)
    return math.nan if span is None else (span[0] + span[1]) / 2


# --- the result ----------------------------------------------------------------------------------------------

@dataclass
class Measure:
    """One transition time: ``kind`` "sb" (symmetry breaking), "nl" (nonlocality) or "ref" (a reference that is
    neither: the global model's own recovery threshold), its 95% interval, the exact value where the model has
    one, and how it was found. ``draws`` (bootstrap, not serialised) give the
    intervals of differences."""

    kind: str
    name: str
    t: float | None
    low: float | None
    high: float | None
    method: str
    radius: int | None = None
    exact: float | None = None
    at_edge: bool = False
    draws: np.ndarray | None = field(default=None, repr=False)
    exact_grid: float | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in vars(self).items() if key != "draws"}


@dataclass
class Concurrence:
    """Every curve on the grid ``t`` (ascending), every transition time (`Measure`), and t_SB - t_NL for each
    pair (reference t_SB: the forward-backward ODE and SDE) with bootstrap intervals."""

    t: list[float]
    radii: list[int]
    patches: list[int]
    speciation: Speciation
    gap: dict
    recovery: dict
    cmi: dict
    sliding: dict
    measures: list[Measure]
    differences: list[dict]
    settings: dict
    skipped: dict
    seconds: float

    def to_dict(self) -> dict:
        return {"t": self.t, "radii": self.radii, "patches": self.patches, "speciation": self.speciation.to_dict(),
                "gap": self.gap, "recovery": self.recovery, "cmi": self.cmi, "sliding": self.sliding,
                "measures": [m.to_dict() for m in self.measures], "differences": self.differences,
                "settings": self.settings, "skipped": self.skipped, "seconds": self.seconds}

    def measure(self, name: str) -> Measure:
        """The measure called ``name``."""
        for m in self.measures:
            if m.name == name:
                return m
        raise PhasediffError(f"no measure {name!r}")


def _peak_measure(name: str, ts, per_item: np.ndarray, weights: np.ndarray, radius: int | None, method: str,
                  exact: float | None = None, exact_curve=None) -> Measure:
    t, edge = peak_times(ts, per_item.mean(1))
    draws, _ = peak_times(ts, _resampled(per_item, weights))
    low, high = _interval(draws)
    grid = None if exact_curve is None else float(peak_times(ts, exact_curve)[0])
    return Measure("nl", name, float(t), low, high, method, radius, exact, bool(edge), draws, grid)


def _difference(reference: Measure, other: Measure) -> dict:
    """reference.t - other.t with the percentile interval of the differences of their draws."""
    value = None if reference.t is None or other.t is None else reference.t - other.t
    with np.errstate(invalid="ignore"):
        low, high = _interval(reference.draws - other.draws)
    overlap = None if low is None or high is None else bool(low <= 0 <= high)
    return {"reference": reference.name, "measure": other.name, "difference": value, "low": low, "high": high,
            "zero_inside": overlap}


def _check_settings(local: Mapping, patches, widths, window_step: float, samples: int, sampler_steps: int,
                    steps_per_unit: float, recovery_steps_per_unit: float, resamples: int) -> None:
    if not isinstance(local, Mapping) or not local:
        raise PhasediffError("need at least one local denoiser {radius: denoiser}")
    for r, d in local.items():
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise PhasediffError(f"local radii must be integers >= 1 (the buffer B_r needs r >= 1), got {r!r}")
        if not callable(d):
            raise PhasediffError(f"the local denoiser of radius {r} is not callable")
    if not patches or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in patches):
        raise PhasediffError(f"patch sizes must be integers >= 1, got {list(patches)}")
    if not widths or any(not 0 < w < 1 for w in widths):
        raise PhasediffError(f"window widths must lie in (0, 1), got {list(widths)}")
    if not 0 < window_step <= 1:
        raise PhasediffError(f"the window step must lie in (0, 1], got {window_step}")
    for name, value in (("samples", samples), ("sampler_steps", sampler_steps), ("resamples", resamples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise PhasediffError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("steps_per_unit", steps_per_unit), ("recovery_steps_per_unit", recovery_steps_per_unit)):
        if not (value > 0 and math.isfinite(value)):
            raise PhasediffError(f"{name} must be a positive number, got {value!r}")


def window_starts(width: float, step: float) -> list[float]:
    """Window starts 0, step, ... up to 1 - width (inclusive, to 1e-9)."""
    count = math.floor((1 - width) / step + 1e-9) + 1
    return [round(k * step, 10) for k in range(count)]


def concurrence(global_denoiser, local: Mapping[int, object], images, labels, classify: Classify,
                ts: Sequence[float], classes: int = 2, model=None, patches: Sequence[int] = DEFAULT_PATCHES,
                widths: Sequence[float] = DEFAULT_WIDTHS, window_step: float = DEFAULT_WINDOW_STEP,
                valid: Callable | None = None, samples: int = 1000, sampler_steps: int = 64,
                steps_per_unit: float = 128.0, recovery_steps_per_unit: float = 32.0, seed: int = 0,
                batch_size: int = 500, device: str | torch.device = "cpu", resamples: int = BOOTSTRAP,
                skipped: Mapping[str, str] | None = None) -> Concurrence:
    """Every symmetry-breaking and nonlocality measure on the grid ``ts`` (see the module's docstring).

    ``local``: {radius: denoiser} (radii >= 1); ``images`` / ``labels`` / ``classify`` / ``classes``: the test
    images, their classes and the class rule (`speciation.class_rule`); ``model``: the exact model of the data
    (gmm2 adds the closed forms and the exact CMI; without one the CMI is skipped); ``valid``: the judge of a
    generated image for the sliding window (None: skipped); ``skipped``: reasons for what the caller could not
    measure (e.g. the Frechet distance), reported as they are. The denoisers must already live on ``device``."""
    start = time.perf_counter()
    ts, images = check_ts(ts), check_images(images)
    batch_size = check_batch_size(batch_size)
    _check_settings(local, patches, widths, window_step, samples, sampler_steps, steps_per_unit,
                    recovery_steps_per_unit, resamples)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise PhasediffError(f"classes must be an integer >= 2, got {classes!r}")
    radii = sorted(int(r) for r in local)
    local = {r: local[r] for r in radii}
    patches = [int(k) for k in patches]
    exact = isinstance(model, TwoComponentMixture)
    skipped = dict(skipped or {})
    n = len(images)
    weights = image_weights(n, seed, resamples)
    measures: list[Measure] = []

    # (a) symmetry breaking: the forward-backward curves of `speciation`, with their bootstrap draws
    level = (1 + 1 / classes) / 2
    runs = {name: forward_backward(global_denoiser, images, labels, classify, ts, method, steps_per_unit, seed,
                                   batch_size, device) for name, method in METHODS.items()}
    ode, sde = kept_curve(runs["ode"]), kept_curve(runs["sde"])
    draws = {name: _t_sb_draws(ts, kept, level, weights) for name, kept in runs.items()}
    empirical = _spectral_time(top_eigenvalue(images))
    reference = gmm2_reference(model, ts, n, ode[0], sde[0], level) if exact else None
    spec = Speciation(
        t=ts, kept=ode[0], kept_low=ode[1], kept_high=ode[2], kept_stderr=ode[3], kept_sde=sde[0],
        kept_sde_low=sde[1], kept_sde_high=sde[2], kept_sde_stderr=sde[3], level=level,
        t_sb=t_sb(ts, ode[0], level), t_sb_interval=_interval(draws["ode"]), t_sb_sde=t_sb(ts, sde[0], level),
        t_sb_sde_interval=_interval(draws["sde"]),
        spectral_t=_spectral_time(gmm2_top_eigenvalue(model)) if exact else empirical,
        spectral_t_empirical=empirical, n=n, classes=classes,
        steps=[recovery_steps(t, steps_per_unit, None) for t in ts], seconds=time.perf_counter() - start,
        exact=reference)
    for name, value, key in (("ode", spec.t_sb, "t_sb"), ("sde", spec.t_sb_sde, "t_sb_sde")):
        low, high = _interval(draws[name])
        measures.append(Measure("sb", f"forward-backward {name.upper()}", value, low, high,
                                f"P(kept) = {level:g} crossing ({METHODS[name]}), bootstrap over images", None,
                                reference[key] if exact else None, False, draws[name]))
    if exact:
        value = spec.spectral_t
        measures.append(Measure("sb", "spectral t_S (exact Lambda)", value, value, value,
                                "sqrt(Lambda) / (1 + sqrt(Lambda)), Lambda = sigma^2 + mu^2 n", None, value, False,
                                np.full(resamples, value)))
    spectral = _spectral_draws(images, weights)
    low, high = _interval(spectral)
    measures.append(Measure("sb", "spectral t_S (empirical covariance)", empirical, low, high,
                            "top eigenvalue of the test images' covariance, bootstrap over images", None,
                            spec.spectral_t if exact else None, False, spectral))

    # (b) nonlocality: gap and recovery on the same noised test images
    per_gap = gap_per_image(global_denoiser, local, images, ts, seed, batch_size, device)
    factor2 = score_factor(np.asarray(ts)) ** 2
    gap: dict = {"units": {"x0": "per-pixel mean squared difference of x0_hat (data units^2)",
                           "score": "per-pixel mean squared difference of the score, ((1 - t) / t^2)^2 x the x0 gap"}}
    for j, r in enumerate(radii):
        x0_items, score_items = per_gap[:, j], per_gap[:, j] * factor2[:, None]
        x0_mean, x0_err = mean_interval(x0_items)
        score_mean, score_err = mean_interval(score_items)
        entry = {"x0": x0_mean.tolist(), "x0_stderr": x0_err.tolist(), "score": score_mean.tolist(),
                 "score_stderr": score_err.tolist()}
        peaks = gmm2_gap_peaks(model, r) if exact else {"x0": None, "score": None}
        closed = gmm2_gap(model, r, ts) if exact else None
        if exact:
            entry.update(exact_x0=closed.tolist(), exact_score=(closed * factor2).tolist(), exact_peaks=peaks)
        gap[str(r)] = entry
        measures.append(_peak_measure(f"locality gap peak (x0 units), r = {r}", ts, x0_items, weights, r,
                                      "peak of the mean gap (parabolic vertex), bootstrap over images", peaks["x0"],
                                      closed))
        measures.append(_peak_measure(f"locality gap peak (score units), r = {r}", ts, score_items, weights, r,
                                      "peak of ((1 - t) / t^2)^2 x the gap, bootstrap over images", peaks["score"],
                                      None if closed is None else closed * factor2))

    per_rec = recovery_per_image([global_denoiser, *local.values()], images, ts, recovery_steps_per_unit, seed,
                                 batch_size, device)
    recovery: dict = {"level": DEFAULT_LEVEL, "steps_per_unit": recovery_steps_per_unit}
    for j, key in enumerate(["global", *map(str, radii)]):
        mse, err = mean_interval(per_rec[:, j])
        entry = {"mse": mse.tolist(), "mse_stderr": err.tolist()}
        first = lambda y: crossings(ts, y, DEFAULT_LEVEL)
        span = first(mse)
        threshold_draws = np.array([np.inf if (c := first(col)) is None else c[0]
                                    for col in _resampled(per_rec[:, j], weights).T])
        low, high = _interval(threshold_draws)
        measures.append(Measure("nl" if key != "global" else "ref", f"recovery MSE = {DEFAULT_LEVEL:g} threshold, "
                                + ("global" if key == "global" else f"r = {key}"), None if span is None else span[0],
                                low, high, "first T_f where the recovery MSE exceeds the level, bootstrap over images",
                                None if key == "global" else int(key), None, bool(mse[0] > DEFAULT_LEVEL),
                                threshold_draws))
        if key != "global":
            excess = per_rec[:, j] - per_rec[:, 0]
            value, err = mean_interval(excess)
            entry.update(excess=value.tolist(), excess_stderr=err.tolist())
            measures.append(_peak_measure(f"recovery excess peak, r = {key}", ts, excess, weights, int(key),
                                          "peak of MSE_r - MSE_global (paired), bootstrap over images"))
        recovery[key] = entry

    # the exact CMI of the centre k x k patch, buffer r
    cmi: dict = {}
    if model is None:
        skipped["cmi"] = "no exact model of the data"
    else:
        from phasediff.info.cmi import measure_cmi

        dense = np.linspace(ts[0], ts[-1], 301)
        for r in radii:
            for k in patches:
                key = f"k={k},r={r}"
                try:
                    result = measure_cmi(model, ts, [r], "exact", patch=k, seed=seed)
                except PhasediffError as err:
                    skipped[f"cmi {key}"] = str(err)
                    continue
                sizes = result.region_sizes[0]
                curve = np.asarray(result.cmi)[:, 0]
                if exact:
                    peak, edge = gmm2_cmi_peak(model, sizes), False
                    method = "exact closed form, maximum refined off the grid"
                elif result.stderr is None:
                    peak, edge = peak_times(ts, curve)
                    method = "exact, peak of the grid curve (parabolic vertex)"
                else:
                    skipped[f"cmi {key}"] = "the exact CMI of this model is a Monte Carlo estimate: no peak interval"
                    continue
                cmi[key] = {"patch": k, "radius": r, "sizes": sizes, "cmi": curve.tolist(), "peak": peak}
                if exact:
                    cmi[key]["dense_t"] = dense.tolist()
                    cmi[key]["dense_cmi"] = model.cmi(dense, sizes["A"], sizes["B"], sizes["C"]).tolist()
                measures.append(Measure("nl", f"CMI peak, A = {k}x{k}, r = {r}", float(peak), float(peak),
                                        float(peak), method, r, float(peak) if exact else None, bool(edge),
                                        np.full(resamples, float(peak)), float(peak_times(ts, curve)[0])))

    # (c) the sliding window
    sliding: dict = {}
    if valid is None:
        skipped.setdefault("sliding window", "no judge of generated images for this data")
    else:
        gen_weights = image_weights(samples, seed, resamples, stream=11)
        shape = tuple(images.shape[1:])
        for r in radii:
            for w in widths:
                starts = window_starts(w, window_step)
                correct = sliding_window(global_denoiser, local[r], valid, samples, shape, starts, w, sampler_steps,
                                         seed, batch_size, str(device))
                centres = np.round(np.asarray(starts) + w / 2, 10)
                accuracy = correct.mean(1)
                low, high = wilson_interval(correct.sum(1), samples)
                resampled = _resampled(correct.astype(float), gen_weights)
                centre_draws = np.array([_window_centre(centres, resampled[:, b]) for b in range(resamples)])
                span = _window_span(centres, accuracy)
                value = None if span is None else (span[0] + span[1]) / 2
                best = int(np.argmax(accuracy))
                key = f"r={r},w={w:g}"
                sliding[key] = {"radius": r, "width": w, "starts": starts, "centres": centres.tolist(),
                                "accuracy": accuracy.tolist(), "low": low.tolist(), "high": high.tolist(),
                                "best_window": [starts[best], min(1.0, round(starts[best] + w, 10))],
                                "best_accuracy": float(accuracy[best]), "span": None if span is None else list(span),
                                "t_nl": value}
                lo, hi = _interval(centre_draws)
                measures.append(Measure("nl", f"sliding window centre, w = {w:g}, r = {r}", value, lo, hi,
                                        "midpoint of the span of window centres with accuracy above halfway between "
                                        f"the worst and the best window (best >= {MIN_ACCURACY:g}), bootstrap over "
                                        "samples", r, None,
                                        bool(span is not None and (span[0] <= centres[0] or span[1] >= centres[-1])),
                                        centre_draws))
        skipped.setdefault("sliding window FD", "no judge network for this data")

    references = [m for m in measures if m.kind == "sb" and m.name.startswith("forward-backward")]
    differences = [_difference(ref, m) for m in measures if m.kind == "nl" for ref in references]
    settings = {"n": n, "samples": samples, "sampler_steps": sampler_steps, "steps_per_unit": steps_per_unit,
                "recovery_steps_per_unit": recovery_steps_per_unit, "widths": list(widths),
                "window_step": window_step, "resamples": resamples, "seed": seed, "class_alpha": CLASS_ALPHA,
                "min_accuracy": MIN_ACCURACY, "model": None if model is None else model.describe()}
    return Concurrence(t=ts, radii=radii, patches=patches, speciation=spec, gap=gap, recovery=recovery, cmi=cmi,
                       sliding=sliding, measures=measures, differences=differences, settings=settings,
                       skipped=skipped, seconds=time.perf_counter() - start)


# --- the table -----------------------------------------------------------------------------------------------

def _time(value: float | None, missing: str = "none") -> str:
    return missing if value is None else f"{value:.4f}"


def _interval_text(low, high) -> str:
    return f"[{_time(low, 'open')}, {_time(high, 'open')}]"


def _signed(value: float | None) -> str:
    return "none" if value is None else f"{value:+.4f}"


def concurrence_table(result: Concurrence | dict) -> str:
    """t_SB by every measure, then t_NL by every measure with t_SB - t_NL for both forward-backward references;
    '*' marks a difference whose 95% interval holds 0 (the two times coincide within the intervals)."""
    data = result.to_dict() if isinstance(result, Concurrence) else result
    measures, differences = data["measures"], data["differences"]
    width = max(len(m["name"]) for m in measures) + 2
    exact = lambda m: "" if m["exact"] is None else f"{m['exact']:.4f}"
    grid = lambda m: "" if m.get("exact_grid") is None else f"{m['exact_grid']:.4f}"
    edge = lambda m: " (grid end)" if m["at_edge"] else ""
    rows = ["symmetry breaking: t_SB", f"  {'measure':<{width}}{'t_SB':>7}  {'95% interval':<19} {'exact':>7}"]
    for m in measures:
        if m["kind"] == "sb":
            rows.append(f"  {m['name']:<{width}}{_time(m['t']):>7}  {_interval_text(m['low'], m['high']):<19} "
                        f"{exact(m):>7}{edge(m)}")
    refs = [m["name"] for m in measures if m["kind"] == "sb" and m["name"].startswith("forward-backward")]
    heads = "".join(f"  {'t_SB(' + r.split()[-1] + ') - t_NL [95%]':<34}" for r in refs)
    rows += ["", ("nonlocality: t_NL (exact: closed form; on grid: the same estimator on the exact curve; * the "
                  "difference's interval holds 0)"),
             f"  {'measure':<{width}}{'t_NL':>7}  {'95% interval':<19} {'exact':>7} {'on grid':>7}{heads}"]
    for m in measures:
        if m["kind"] not in ("nl", "ref"):
            continue
        interval = "" if m["t"] is None else _interval_text(m["low"], m["high"])
        line = f"  {m['name']:<{width}}{_time(m['t']):>7}  {interval:<19} {exact(m):>7} {grid(m):>7}"
        for ref in refs:
            d = next((d for d in differences if d["reference"] == ref and d["measure"] == m["name"]), None)
            text = "" if d is None else (f"{_signed(d['difference'])} {_interval_text(d['low'], d['high'])}"
                                         + ("*" if d["zero_inside"] else ""))
            line += f"  {text:<34}"
        rows.append(line.rstrip() + edge(m))
    for key, reason in data["skipped"].items():
        rows.append(f"skipped: {key}: {reason}")
    s = data["settings"]
    rows.append(f"n = {s['n']} test images, {s['samples']} samples per window, {s['resamples']} bootstrap "
                f"resamples; {data['seconds']:.1f} s")
    return "\n".join(rows)
