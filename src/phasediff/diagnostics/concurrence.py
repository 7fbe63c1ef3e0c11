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
  costs what a pixel costs). Data without an exact CMI (images, Ising) skip these rows, or take the peaks of the
  curves of a `phasediff cmi` run (``cmi_run``, `load_cmi_run`, `cmi_run_peaks`: its own t grid, patch and
  estimator; the interval redraws each point from its standard error). The neural estimator is never run here.
- Sliding window: generation from pure noise with the schedule "a:a+w=global,local" (`denoisers.schedule`),
  Euler, for window starts a on a grid, and with each model alone (the ceiling and the floor), from the same
  noise; each sample is judged by ``valid`` (a `SampleJudge`; gmm2: `gmm2_judge`; Ising: `ising_judge`, |m| and
  energy typical of the model; labelled images: `classifier_judge`, the judge's confidence typical of the test
  images). Unconditional generation has no target class, so "class accuracy" is the fraction of samples that
  are typical members of the class the rule gives them. A judge network adds the Frechet distance of each
  window's samples to the test split in its features (`metrics.bootstrap_frechet`) and a second t_NL from it.

Trained checkpoints (`load_checkpoints`): the global U-Net and the strictly local networks are checked against
the data (the sidecar's data and image shape; periodic networks exactly for data on a torus) before any weights
load; `check_labels_and_judge` does the same for the classifier judge.

Which t_NL, and why the peak: for the gap (both units), the recovery excess and the CMI, t_NL is the time of
the curve's maximum, the vertex of the parabola through the largest grid value and its two neighbours (a grid
end when the maximum sits there; flagged). A peak needs no level: a crossing of a level depends on the level's
units, and G_0 and G_s differ by a factor that runs from 10^-4 to 10^5 over t in [0.05, 0.99], so no one level
means the same in both; the CMI's transition (a diverging Markov length) is also defined by its peak. A peak is not invariant
under a t-dependent rescaling, which is why both units are reported: they peak at different t. The 0.03
recovery threshold is a crossing (the paper's own definition). The sliding window's t_NL is the midpoint of the
span of window centres whose accuracy exceeds halfway between the worst and the best window (robust where several
windows reach the top, where an argmax would be arbitrary); None unless the best window reaches ``MIN_ACCURACY``
and the worst does not. By FD: the span of window centres whose log FD lies below halfway between the best and
the worst window, None unless the best window gets halfway (in log FD) from the local model alone to the global
one alone and the worst does not (`_fd_span`). If the needed stretch of global steps is [t_lo, t_hi] and
w >= t_hi - t_lo, the windows
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
from typing import TYPE_CHECKING

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
from phasediff.info.exact import has_exact_cmi
from phasediff.paths import add_noise, noised_variance, signal_scale
from phasediff.progress import progress
from phasediff.sampling import euler, sample, time_grid
from phasediff.stats import crossings, mean_interval, seeded_noise, wilson_interval

if TYPE_CHECKING:
    from phasediff.diagnostics.conditioning import ConditioningWindow

DEFAULT_PATCHES = (1, 3, 5, 7)
DEFAULT_WIDTHS = (0.2,)
DEFAULT_WINDOW_STEP = 0.05
CLASS_ALPHA = 1e-3  # gmm2_class_check: a true sample of the data fails with this probability
MIN_ACCURACY = 0.5  # the sliding window's t_NL needs one window at least this accurate
DENSE_GRID = 2001  # exact curves: dense grid for the maximum before the bounded refinement
GAP_NODES = 200  # Gauss-Hermite nodes per dimension of the exact gmm2 gap
FD_SKIPPED_GMM2 = ("no judge network: the Frechet distance is taken in the features of the project's classifier, "
                   "which gmm2 does not have; its class is a sign")
FD_SKIPPED_ISING = ("no judge network: Ising configurations are judged by their physical observables (|m| and the "
                    "energy per spin, the sliding window's rule), not by a Frechet distance")
CMI_SKIPPED = ("no exact CMI for this data (the exact estimator serves gmm2, grf, gmrf and gmm); give the results of a "
               "`phasediff cmi` run of it (--cmi-run DIR) to take its peaks: the neural estimator is too slow to run "
               "here")
ARCHITECTURES = {"classifier": "a classifier", "unet": "a global U-Net", "local": "a strictly local network",
                 "wiener-local": "a Wiener + local model (global only through its linear part)"}  # in refusals
JUDGE_ALPHA = 0.05  # classifier_judge: a test image fails the confidence rule with this probability
ISING_ALPHA = 0.02  # ising_judge: a configuration of the model fails with about this probability at most
FD_ROUNDS = 50  # bootstrap rounds of each window's Frechet distance (`metrics.bootstrap_frechet`, as `judge`)


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


# --- judges of generated images for trained checkpoints -------------------------------------------------------

@dataclass
class SampleJudge:
    """How the sliding window scores generated images: ``valid(images) -> (N,) bool`` (the class accuracy of
    unconditional samples), what it tests (``description``), and optionally ``features(images) -> (N, F)``, a
    judge network's features, with ``reference`` (M, F), those of the test split, for the Frechet distance."""

    valid: Callable[[torch.Tensor], np.ndarray]
    description: str
    features: Callable[[torch.Tensor], np.ndarray] | None = None
    reference: np.ndarray | None = None


def gmm2_judge(model: TwoComponentMixture, alpha: float = CLASS_ALPHA) -> SampleJudge:
    """`gmm2_class_check` as a `SampleJudge` (no Frechet distance: gmm2 has no judge network)."""
    z = float(ndtri(1 - alpha / 2))
    return SampleJudge(gmm2_class_check(model, alpha),
                       (f"|mean - s mu| <= {z:.3f} sigma / L, s the sign of the mean (a sample of the model passes "
                        f"with probability {1 - alpha:g})"))


def classifier_judge(classifier, reference_images, alpha: float = JUDGE_ALPHA) -> SampleJudge:
    """The project's classifier as the judge of unconditional samples (MNIST, Fashion-MNIST).

    Unconditional generation has no target class, so, as for gmm2, a sample counts as correct when it is a typical
    member of the class the judge gives it: its top-class probability is at least the ``alpha`` quantile of that
    probability on the test images ``reference_images`` (which therefore pass with probability about 1 - alpha).
    Images are clamped to [0, 1] (the judge's domain). The features are the judge's penultimate layer, as in
    `metrics.quality`; ``reference`` are those of ``reference_images``."""
    from phasediff.metrics import classify

    if not 0 < alpha < 1:
        raise PhasediffError(f"alpha must lie in (0, 1), got {alpha}")
    clamp = lambda images: torch.as_tensor(images).float().clamp(0, 1).cpu()
    features, probs = classify(classifier, clamp(reference_images))
    confidence = probs.max(1)
    level = float(np.quantile(confidence, alpha, method="inverted_cdf"))
    passed = float(np.mean(confidence >= level))
    return SampleJudge(
        valid=lambda images: classify(classifier, clamp(images))[1].max(1) >= level,
        description=(f"the judge's top-class probability >= {level:.4f}, the {alpha:g} quantile of its value on the "
                     f"{len(confidence)} test images (which pass at {passed:.3f})"),
        features=lambda images: classify(classifier, clamp(images))[0], reference=features)


def ising_judge(reference_images, alpha: float = ISING_ALPHA) -> SampleJudge:
    """The judge of generated Ising configurations (spins: image > 0.5): the class is the sign of the magnetisation
    m, and a configuration counts as correct when |m| and the energy per spin both lie within the central
    1 - alpha / 2 range of their values on the test configurations ``reference_images`` (so a configuration of
    the model passes with probability at least about 1 - alpha); one made of domains of both signs, to which the
    sign of m still gives a class, fails on |m|. No Frechet distance: Ising has no judge network."""
    from phasediff.data.ising import energy_per_spin, magnetisation
    from phasediff.observables import lattice_spins

    if not 0 < alpha < 1:
        raise PhasediffError(f"alpha must lie in (0, 1), got {alpha}")

    def observables(images) -> tuple[np.ndarray, np.ndarray]:
        spins = lattice_spins(torch.as_tensor(images).float().cpu().numpy())
        return np.abs(magnetisation(spins)), energy_per_spin(spins)

    m, e = observables(reference_images)
    q = [alpha / 4, 1 - alpha / 4]
    (m_lo, m_hi), (e_lo, e_hi) = (np.quantile(v, q, method="inverted_cdf") for v in (m, e))

    def valid(images) -> np.ndarray:
        m, e = observables(images)
        return (m >= m_lo) & (m <= m_hi) & (e >= e_lo) & (e <= e_hi)

    passed = float(valid(reference_images).mean())
    return SampleJudge(valid=valid, description=(
        f"|m| in [{m_lo:.4f}, {m_hi:.4f}] and the energy per spin in [{e_lo:.4f}, {e_hi:.4f}], the central "
        f"{1 - alpha / 2:g} ranges of the {len(m)} test configurations (which pass at {passed:.3f}); spins: "
        "image > 0.5"))


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
    out = np.zeros((len(starts), n), dtype=bool)
    for k, a in enumerate(progress(starts, desc=f"sliding window (w = {width:g})")):
        denoiser = window_denoiser(global_denoiser, local_denoiser, a, width)
        out[k] = valid(sample(denoiser, n, tuple(shape), steps=steps, seed=seed, batch_size=batch_size,
                              device=device))
    return out


def window_denoiser(global_denoiser, local_denoiser, start: float, width: float):
    """The schedule "a:a+w=global,local" (the window cut at t = 1) built from the two denoisers."""
    from phasediff.denoisers.schedule import Schedule

    hi = min(1.0, round(start + width, 10))
    schedule = Schedule.parse(f"{start:.10g}:{hi:.10g}=global,local")
    return schedule.build({"global": global_denoiser, "local": local_denoiser})


@dataclass
class _Scored:
    """One set of generated samples as the judge sees them: per-sample validity and (with a judge network)
    features."""

    correct: np.ndarray
    features: np.ndarray | None = None


def _generate_and_score(denoiser, judge: SampleJudge, n: int, shape, steps: int, seed: int, batch_size: int,
                        device: str) -> _Scored:
    images = sample(denoiser, n, tuple(shape), steps=steps, seed=seed, batch_size=batch_size, device=device).cpu()
    features = None if judge.features is None else np.asarray(judge.features(images), dtype=np.float64)
    return _Scored(np.asarray(judge.valid(images), dtype=bool), features)


# --- bootstrap -----------------------------------------------------------------------------------------------

def image_weights(n: int, seed: int, resamples: int, stream: int = 7) -> np.ndarray:
    """(resamples, n) multinomial resample counts; stream 7 is `speciation.bootstrap_t_sb`'s."""
    rng = np.random.default_rng([int(seed), stream])
    return rng.multinomial(n, np.full(n, 1 / n), size=resamples)


def resampled_means(per_item: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T, B) bootstrap means of per_item (T, N)."""
    return per_item @ weights.T / per_item.shape[1]


def percentile_interval(draws: np.ndarray) -> tuple[float | None, float | None]:
    """95% percentile interval (inverted CDF) of draws; +-inf are kept in order (open ends -> None); NaN draws
    (no value on that resample) count against both ends: more than 2.5% NaN opens the interval."""
    draws = np.asarray(draws, dtype=np.float64)
    if np.mean(np.isnan(draws)) > 0.025:
        return None, None
    ends = np.quantile(draws[~np.isnan(draws)], [0.025, 0.975], method="inverted_cdf")
    return tuple(float(e) if np.isfinite(e) else None for e in ends)


def _t_sb_draws(ts, kept: np.ndarray, level: float, weights: np.ndarray) -> np.ndarray:
    """t_SB on every resample; +inf where the resampled curve never falls below the level on the grid."""
    curves = resampled_means(kept.astype(float), weights)
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


def window_span(centres: np.ndarray, accuracy: np.ndarray) -> tuple[float, float] | None:
    """The span of window centres whose accuracy exceeds halfway between the worst and the best window (linear
    between windows, `stats.crossings`); None unless the best window reaches MIN_ACCURACY and the worst does not
    (no window makes the local sampler generate the data, or the local sampler needs none)."""
    best, worst = float(np.max(accuracy)), float(np.min(accuracy))
    if best < MIN_ACCURACY or worst >= MIN_ACCURACY:
        return None
    return crossings(centres, accuracy, (best + worst) / 2)


def window_centre(centres: np.ndarray, accuracy: np.ndarray) -> float:
    """The midpoint of `window_span`, NaN where it is None."""
    span = window_span(centres, accuracy)
    return math.nan if span is None else (span[0] + span[1]) / 2


def window_summary(starts: Sequence[float], width: float, correct: np.ndarray,
                   weights: np.ndarray) -> tuple[dict, np.ndarray]:
    """Windows [a, a + width] at ``starts`` whose samples passed or failed, ``correct`` (A, n): per window the
    accuracy with its Wilson 95% interval, the best window, the span of window centres above halfway between the
    worst and the best (`window_span`) and its midpoint (None without a span); and the midpoint on each resample
    ``weights`` (B, n) (NaN where it has none)."""
    centres = np.round(np.asarray(starts) + width / 2, 10)
    accuracy = correct.mean(1)
    low, high = wilson_interval(correct.sum(1), correct.shape[1])
    draws = resampled_means(correct.astype(float), weights)
    span = window_span(centres, accuracy)
    best = int(np.argmax(accuracy))
    summary = {"width": width, "starts": list(starts), "centres": centres.tolist(), "accuracy": accuracy.tolist(),
               "low": low.tolist(), "high": high.tolist(),
               "best_window": [starts[best], min(1.0, round(starts[best] + width, 10))],
               "best_accuracy": float(accuracy[best]), "span": None if span is None else list(span),
               "midpoint": None if span is None else (span[0] + span[1]) / 2}
    return summary, np.array([window_centre(centres, draws[:, b]) for b in range(len(weights))])


def _fd_span(centres: np.ndarray, fd: np.ndarray, all_global: float, all_local: float) -> tuple[float, float] | None:
    """The span of window centres whose Frechet distance lies below halfway, in log FD, between the best and the
    worst window (`stats.crossings` of -log FD); None unless the best window gets at least halfway (in log FD) from
    the all-local sampler's FD to the all-global one's, sqrt(FD_local FD_global), and the worst does not (the
    analogue of `window_span`'s MIN_ACCURACY: FD has no absolute scale, the two samplers alone give it one). Log,
    because FDs of local and global samples differ by orders of magnitude."""
    fd = np.asarray(fd, dtype=np.float64)
    if not (np.all(fd > 0) and all_global > 0 and all_local > 0):
        return None
    good = math.sqrt(all_global * all_local)
    best, worst = float(fd.min()), float(fd.max())
    if not best <= good < worst:
        return None
    return crossings(centres, -np.log(fd), -(math.log(best) + math.log(worst)) / 2)


def at_edge(span: tuple[float, float] | None, centres: np.ndarray) -> bool:
    """Whether a span of window centres runs to the first or the last window (cut there: biased)."""
    return bool(span is not None and (span[0] <= centres[0] or span[1] >= centres[-1]))


def _fd_centre(centres: np.ndarray, fd: np.ndarray, all_global: float, all_local: float) -> float:
    """The midpoint of `_fd_span`, NaN where it is None."""
    span = _fd_span(centres, fd, all_global, all_local)
    return math.nan if span is None else (span[0] + span[1]) / 2


def _frechet_scores(sets: Sequence[np.ndarray], reference: np.ndarray, weights: np.ndarray,
                    seed: int) -> tuple[list[dict], np.ndarray]:
    """For each feature set (N, F) (row j of every set: samples from the same starting noise): the bias-corrected
    Frechet distance to ``reference`` with its 95% interval and the plug-in value (`metrics.bootstrap_frechet`,
    FD_ROUNDS rounds, as `phasediff judge`), and (S, B) plug-in distances on the resamples ``weights`` (B, N) (the
    same rows in every set: paired)."""
    from phasediff.metrics import FrechetReference, bootstrap_frechet, one_blas_thread

    yardstick = FrechetReference.of(reference)
    index = [np.repeat(np.arange(len(sets[0])), w) for w in weights]
    scores, draws = [], np.zeros((len(sets), len(weights)))
    for s, features in enumerate(sets):
        fd, low, high, plug_in = bootstrap_frechet(features, reference, rounds=FD_ROUNDS, seed=seed)
        scores.append({"fd": fd, "fd_low": low, "fd_high": high, "fd_plug_in": plug_in})
        with one_blas_thread():
            draws[s] = [yardstick.distance(features[i]) for i in index]
    return scores, draws


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
    conditioning: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"t": self.t, "radii": self.radii, "patches": self.patches, "speciation": self.speciation.to_dict(),
                "gap": self.gap, "recovery": self.recovery, "cmi": self.cmi, "sliding": self.sliding,
                "conditioning": self.conditioning, "measures": [m.to_dict() for m in self.measures],
                "differences": self.differences, "settings": self.settings, "skipped": self.skipped,
                "seconds": self.seconds}

    def measure(self, name: str) -> Measure:
        """The measure called ``name``."""
        for m in self.measures:
            if m.name == name:
                return m
        raise PhasediffError(f"no measure {name!r}")


# --- the CMI of a `phasediff cmi` run -------------------------------------------------------------------------

CMI_RUN_FIELDS = ("path", "estimator", "dataset", "site", "patch")


def load_cmi_run(path) -> dict:
    """The results of a `phasediff cmi` run (`report.runs.write_cmi_run`): ``path`` is its run directory (its
    results.json is read) or such a results file; checked (t increasing in [0, 1] with at least 3 points, radii
    >= 1, cmi (T, R) finite, stderr None or (T, R) finite and >= 0), with ``path`` added."""
    import json
    from pathlib import Path

    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise PhasediffError(f"{path} is neither a `phasediff cmi` run directory (with results.json) nor its "
                             "results file")
    try:
        run = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PhasediffError(f"{file} is not JSON") from None
    need = ("t", "r", "cmi", "estimator", "dataset", "patch", "region_sizes")
    if not isinstance(run, dict) or any(key not in run for key in need):
        raise PhasediffError(f"{file} is not the results of a `phasediff cmi` run (it needs {', '.join(need)})")
    try:
        t = np.asarray(run["t"], dtype=np.float64)
        r = np.asarray(run["r"])
        cmi = np.asarray(run["cmi"], dtype=np.float64)
        stderr = None if run.get("stderr") is None else np.asarray(run["stderr"], dtype=np.float64)
    except (TypeError, ValueError):
        raise PhasediffError(f"{file}: t, r, cmi and stderr must be numbers") from None
    if t.ndim != 1 or len(t) < 3 or not np.all(np.isfinite(t)) or t[0] < 0 or t[-1] > 1 or np.any(np.diff(t) <= 0):
        raise PhasediffError(f"{file}: the CMI peaks need at least 3 increasing times in [0, 1], got {run['t']!r:.80}")
    if (r.ndim != 1 or not len(r) or r.dtype.kind not in "iu" or np.any(r < 1) or len(set(r.tolist())) != len(r)
            or not isinstance(run["region_sizes"], list) or len(run["region_sizes"]) != len(r)):
        raise PhasediffError(f"{file}: r must be distinct integers >= 1 with one region_sizes entry each")
    if cmi.shape != (len(t), len(r)) or not np.all(np.isfinite(cmi)):
        raise PhasediffError(f"{file}: cmi must be finite numbers of shape (t, r) = ({len(t)}, {len(r)})")
    if stderr is not None and (stderr.shape != cmi.shape or not np.all(np.isfinite(stderr)) or np.any(stderr < 0)):
        raise PhasediffError(f"{file}: stderr must be finite numbers >= 0 of the shape of cmi")
    if isinstance(run["patch"], bool) or not isinstance(run["patch"], int) or run["patch"] < 1:
        raise PhasediffError(f"{file}: patch must be an integer >= 1")
    return {**run, "path": str(file)}


def cmi_run_peaks(run: Mapping, radii: Sequence[int], resamples: int, seed: int = 0
                  ) -> tuple[dict, list[Measure], dict[str, str]]:
    """(cmi entries, Measures, skipped) for the CMI peaks of a checked `load_cmi_run` result at ``radii``.

    The peak is `peak_times` (parabolic vertex) of the run's curve on its own t grid; its interval redraws the
    curve from N(value, s.e.^2) independently at each t, ``resamples`` times (the draws of `info.markov.peak_time`,
    with the vertex instead of the grid argmax); a run without standard errors gives a zero-width interval. These
    draws are independent of the test images' bootstrap. A radius the run does not have is skipped."""
    t, cmi = np.asarray(run["t"], dtype=np.float64), np.asarray(run["cmi"], dtype=np.float64)
    stderr = None if run.get("stderr") is None else np.asarray(run["stderr"], dtype=np.float64)
    rs = [int(r) for r in run["r"]]
    k = int(run["patch"])
    rng = np.random.default_rng([int(seed), 13])
    entries, measures, skipped = {}, [], {}
    for r in radii:
        if r not in rs:
            skipped[f"cmi r={r}"] = f"the CMI run {run.get('path')} has no radius {r} (it has {rs})"
            continue
        j = rs.index(r)
        curve = cmi[:, j]
        peak, edge = peak_times(t, curve)
        if stderr is None:
            draws = np.full(resamples, float(peak))
            how = "no standard errors in the run: zero-width interval"
        else:
            redrawn = curve[:, None] + stderr[:, j][:, None] * rng.standard_normal((len(t), resamples))
            draws = peak_times(t, redrawn)[0]
            how = "interval: the curve redrawn from N(value, s.e.^2) at each t"
        low, high = percentile_interval(draws)
        entries[f"k={k},r={r}"] = {"patch": k, "radius": r, "sizes": run["region_sizes"][j], "t": t.tolist(),
                                   "cmi": curve.tolist(), "stderr": None if stderr is None else stderr[:, j].tolist(),
                                   "peak": float(peak), "source": f"{run['estimator']}: {run['dataset']}"}
        measures.append(Measure("nl", f"CMI peak, A = {k}x{k}, r = {r}", float(peak), low, high,
                                f"peak of the {run['estimator']} CMI of a `phasediff cmi` run on its own t grid "
                                f"(parabolic vertex); {how}", r, None, bool(edge), draws))
    return entries, measures, skipped


# --- trained checkpoints ---------------------------------------------------------------------------------------

def same_data(a: str, b: str) -> bool:
    """Whether two data specs name the same data, whatever the number of images (n=): two specs of one synthetic
    model compare by the model they build (so 'gmm2:L=7' equals 'gmm2:L=7,mu=1,sigma=1') and their crop, others by
    their name and values (`specs.spec_key`)."""
    from phasediff.data.registry import MODELS, is_file_spec, load_model
    from phasediff.specs import parse_spec, spec_key

    if is_file_spec(a) or is_file_spec(b):
        return a.strip() == b.strip()
    name_a, name_b = parse_spec(a)[0], parse_spec(b)[0]
    if name_a != name_b:
        return False
    if name_a in MODELS:
        crop = lambda spec: dict(spec_key(spec)[1]).get("crop")
        return load_model(a).describe() == load_model(b).describe() and crop(a) == crop(b)
    key = lambda spec: frozenset(item for item in spec_key(spec)[1] if item[0] != "n")
    return key(a) == key(b)


def without_n(spec: str) -> str:
    """``spec`` without its n= (which would cap a reference set such as the judge's test split)."""
    from phasediff.specs import parse_spec

    name, params = parse_spec(spec)
    rest = ",".join(f"{key}={value}" for key, value in params.items() if key != "n")
    return name + (f":{rest}" if rest else "")


def checkpoint_info(path, spec: str, shape: Sequence[int], periodic: bool) -> dict:
    """The sidecar of a checkpoint that must model ``spec`` (images of ``shape``; on a torus if ``periodic``)."""
    from phasediff.denoisers.checkpoint import read_info

    info = read_info(path)
    data = info.get("data")
    if not isinstance(data, str):
        raise PhasediffError(f"{path} does not record the data it was trained on (sidecar field 'data')")
    if not same_data(data, spec):
        raise PhasediffError(f"{path} was trained on {data!r}, not on {spec!r}")
    trained = tuple(info.get("image_shape") or ())
    if trained != tuple(shape):
        raise PhasediffError(f"{path} was trained on images of shape {trained or 'unrecorded'}, the data's are "
                             f"{tuple(shape)}")
    if bool(info["model"].get("periodic")) != periodic:
        where = "lives on a torus" if periodic else "does not live on a torus"
        raise PhasediffError(f"{path} is {'not ' if periodic else ''}a periodic network, but {spec} {where}")
    return info


def parse_local_models(entries: Sequence[str]) -> list[tuple[int | None, str]]:
    """--local-model entries 'R=PATH' or 'PATH' -> [(R or None, PATH)]."""
    out = []
    for entry in entries:
        head, equals, tail = entry.partition("=")
        if equals and head.strip().isdigit():
            out.append((int(head), tail))
        elif equals and head.strip().lstrip("+-").isdigit():
            raise PhasediffError(f"--local-model R=PATH needs a radius R >= 1, got {entry!r}")
        else:
            out.append((None, entry))
    return out


def load_checkpoints(spec: str, global_path, local: Sequence[tuple[int | None, str]], shape: Sequence[int],
                     periodic: bool = False, device: str | torch.device = "cpu"
                     ) -> tuple[object, dict[int, object], dict[int, str]]:
    """(the global denoiser, {radius: strictly local denoiser}, {radius: its path}) from checkpoints that model
    ``spec``, checked
    before any weights load: every sidecar's data equals ``spec`` (`same_data`) and its image shape ``shape``;
    the networks are periodic exactly when the data live on a torus; the global one is a U-Net; each local one
    is a strictly local network (not a classifier, a U-Net or a Wiener + local model) whose radius equals the R
    it was given with (``local``: [(R or None, path)]); no two share a radius."""
    from phasediff.denoisers.checkpoint import load

    info = checkpoint_info(global_path, spec, shape, periodic)
    arch = info["model"].get("arch")
    if arch != "unet":
        what = ARCHITECTURES.get(arch, repr(arch))
        raise PhasediffError(f"--model {global_path} is {what}, not a global denoiser (a U-Net)")
    if not local:
        raise PhasediffError("a global checkpoint needs at least one --local-model [R=]CHECKPOINT to compare with")
    paths: dict[int, str] = {}
    for given, path in local:
        info = checkpoint_info(path, spec, shape, periodic)
        arch = info["model"].get("arch")
        if arch != "local":
            what = ARCHITECTURES.get(arch, repr(arch))
            raise PhasediffError(f"--local-model {path} is {what}, not a strictly local denoiser")
        radius = int(info["model"]["radius"])
        if given is not None and given != radius:
            raise PhasediffError(f"--local-model {given}={path}: the checkpoint has radius {radius}, not {given}")
        if radius < 1:
            raise PhasediffError(f"--local-model {path} has radius {radius}: the buffer B_r needs r >= 1")
        if radius in paths:
            raise PhasediffError(f"two local checkpoints of radius {radius}: {paths[radius]} and {path}")
        paths[radius] = path
    paths = dict(sorted(paths.items()))
    return load(global_path, device), {r: load(path, device) for r, path in paths.items()}, paths


def check_labels_and_judge(judge, spec: str, data) -> None:
    """Refuse a judge that cannot classify ``data`` (a `Dataset` of ``spec``): not a classifier, trained on other
    data or on images of another shape, or fewer classes than the labels need; and data without labels."""
    from phasediff.denoisers.checkpoint import read_info

    info = read_info(judge)
    if info["model"].get("arch") != "classifier":
        raise PhasediffError(f"--judge {judge} is not a classifier checkpoint")
    trained = info.get("data")
    if not isinstance(trained, str) or not same_data(trained, spec):
        raise PhasediffError(f"the judge {judge} was trained on {trained!r}, not on {spec!r}")
    if tuple(info.get("image_shape") or ()) != tuple(data.shape):
        raise PhasediffError(f"the judge {judge} was trained on images of shape "
                             f"{tuple(info.get('image_shape') or ())}, the data's are {tuple(data.shape)}")
    if data.labels is None:
        raise PhasediffError(f"{spec} has no labels: the forward-backward test needs a class per image")
    labels = np.asarray(data.labels)
    classes = int(info["model"]["num_classes"])
    if labels.min() < 0 or labels.max() >= classes:
        raise PhasediffError(f"the labels of {spec} run from {labels.min()} to {labels.max()}, the judge {judge} "
                             f"knows classes 0..{classes - 1}")


def _peak_measure(name: str, ts, per_item: np.ndarray, weights: np.ndarray, radius: int | None, method: str,
                  exact: float | None = None, exact_curve=None) -> Measure:
    t, edge = peak_times(ts, per_item.mean(1))
    draws, _ = peak_times(ts, resampled_means(per_item, weights))
    low, high = percentile_interval(draws)
    grid = None if exact_curve is None else float(peak_times(ts, exact_curve)[0])
    return Measure("nl", name, float(t), low, high, method, radius, exact, bool(edge), draws, grid)


def _difference(reference: Measure, other: Measure) -> dict:
    """reference.t - other.t with the percentile interval of the differences of their draws."""
    value = None if reference.t is None or other.t is None else reference.t - other.t
    with np.errstate(invalid="ignore"):
        low, high = percentile_interval(reference.draws - other.draws)
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
                valid: Callable | SampleJudge | None = None, samples: int = 1000, sampler_steps: int = 64,
                steps_per_unit: float = 128.0, recovery_steps_per_unit: float = 32.0, seed: int = 0,
                batch_size: int = 500, device: str | torch.device = "cpu", resamples: int = BOOTSTRAP,
                skipped: Mapping[str, str] | None = None, cmi_run: Mapping | None = None,
                conditioning: ConditioningWindow | None = None) -> Concurrence:
    """Every symmetry-breaking and nonlocality measure on the grid ``ts`` (see the module's docstring).

    ``local``: {radius: denoiser} (radii >= 1); ``images`` / ``labels`` / ``classify`` / ``classes``: the test
    images, their classes and the class rule (`speciation.class_rule`); ``model``: the exact model of the data
    (gmm2 adds the closed forms and the exact CMI; without an exact CMI the CMI rows are skipped, unless
    ``cmi_run`` is given); ``valid``: the judge of a generated image for the sliding window, a plain
    ``images -> bools`` or a `SampleJudge` (which may add a Frechet distance; None: the window is skipped);
    ``cmi_run``: the results.json of a `phasediff cmi` run (`load_cmi_run`), whose curves give the CMI peaks
    instead of the exact CMI; ``conditioning``: the conditioning-window test of a class-conditional network
    (`conditioning.conditioning_window`, run by the caller), whose t_cond joins the t_SB rows; ``skipped``: reasons for what the caller could not measure (e.g. the Frechet
    distance), reported as they are. The denoisers must already live on ``device``."""
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
        t_sb=t_sb(ts, ode[0], level), t_sb_interval=percentile_interval(draws["ode"]), t_sb_sde=t_sb(ts, sde[0], level),
        t_sb_sde_interval=percentile_interval(draws["sde"]),
        spectral_t=_spectral_time(gmm2_top_eigenvalue(model)) if exact else empirical,
        spectral_t_empirical=empirical, n=n, classes=classes,
        steps=[recovery_steps(t, steps_per_unit, None) for t in ts], seconds=time.perf_counter() - start,
        exact=reference)
    for name, value, key in (("ode", spec.t_sb, "t_sb"), ("sde", spec.t_sb_sde, "t_sb_sde")):
        low, high = percentile_interval(draws[name])
        measures.append(Measure("sb", f"forward-backward {name.upper()}", value, low, high,
                                f"P(kept) = {level:g} crossing ({METHODS[name]}), bootstrap over images", None,
                                reference[key] if exact else None, False, draws[name]))
    if exact:
        value = spec.spectral_t
        measures.append(Measure("sb", "spectral t_S (exact Lambda)", value, value, value,
                                "sqrt(Lambda) / (1 + sqrt(Lambda)), Lambda = sigma^2 + mu^2 n", None, value, False,
                                np.full(resamples, value)))
    spectral = _spectral_draws(images, weights)
    low, high = percentile_interval(spectral)
    measures.append(Measure("sb", "spectral t_S (empirical covariance)", empirical, low, high,
                            "top eigenvalue of the test images' covariance, bootstrap over images", None,
                            spec.spectral_t if exact else None, False, spectral))
    if conditioning is not None:
        measures += conditioning.measures

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
                                    for col in resampled_means(per_rec[:, j], weights).T])
        low, high = percentile_interval(threshold_draws)
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
    if cmi_run is not None:
        cmi, found, missing = cmi_run_peaks(cmi_run, radii, resamples, seed)
        measures += found
        skipped.update(missing)
    elif not has_exact_cmi(model):
        skipped["cmi"] = CMI_SKIPPED
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
    judge = (None if valid is None else valid if isinstance(valid, SampleJudge)
             else SampleJudge(valid, "it passes the given rule"))
    if judge is None:
        skipped.setdefault("sliding window", "no judge of generated images for this data")
    else:
        gen_weights = image_weights(samples, seed, resamples, stream=11)
        shape = tuple(images.shape[1:])
        score = lambda d: _generate_and_score(d, judge, samples, shape, sampler_steps, seed, batch_size, str(device))
        all_global = score(global_denoiser)
        for r in radii:
            all_local = score(local[r])
            for w in widths:
                starts = window_starts(w, window_step)
                scored = [score(window_denoiser(global_denoiser, local[r], a, w))
                          for a in progress(starts, desc=f"sliding window (r = {r}, w = {w:g})")]
                summary, centre_draws = window_summary(starts, w, np.stack([s.correct for s in scored]),
                                                       gen_weights)
                centres, span, value = np.asarray(summary["centres"]), summary["span"], summary.pop("midpoint")
                key = f"r={r},w={w:g}"
                entry = {"radius": r, **summary, "t_nl": value}
                for name, alone in (("all_global", all_global), ("all_local", all_local)):
                    k = int(alone.correct.sum())
                    a_low, a_high = wilson_interval(np.array([k]), samples)
                    entry[name] = {"accuracy": k / samples, "low": float(a_low[0]), "high": float(a_high[0])}
                sliding[key] = entry
                lo, hi = percentile_interval(centre_draws)
                measures.append(Measure("nl", f"sliding window centre, w = {w:g}, r = {r}", value, lo, hi,
                                        "midpoint of the span of window centres with accuracy above halfway between "
                                        f"the worst and the best window (best >= {MIN_ACCURACY:g}), bootstrap over "
                                        "samples", r, None, at_edge(span, centres), centre_draws))
                if judge.features is None:
                    continue
                sets = [s.features for s in scored] + [all_global.features, all_local.features]
                scores, fd_draws = _frechet_scores(sets, judge.reference, gen_weights, seed)
                plug_in = np.array([s["fd_plug_in"] for s in scores])
                fd_span = _fd_span(centres, plug_in[:-2], plug_in[-2], plug_in[-1])
                fd_value = None if fd_span is None else (fd_span[0] + fd_span[1]) / 2
                fd_centres = np.array([_fd_centre(centres, fd_draws[:-2, b], fd_draws[-2, b], fd_draws[-1, b])
                                       for b in range(resamples)])
                entry.update({name: [s[name] for s in scores[:-2]] for name in scores[0]})
                entry["all_global"].update(scores[-2])
                entry["all_local"].update(scores[-1])
                entry.update(fd_span=None if fd_span is None else list(fd_span), fd_t_nl=fd_value)
                lo, hi = percentile_interval(fd_centres)
                measures.append(Measure("nl", f"sliding window centre by FD, w = {w:g}, r = {r}", fd_value, lo, hi,
                                        "midpoint of the span of window centres whose plug-in Frechet distance (judge "
                                        "features) lies below halfway, in log FD, between the best and the worst "
                                        "window (the best at least halfway from all-local to all-global), bootstrap "
                                        "over samples", r, None, at_edge(fd_span, centres), fd_centres))
        if judge.features is None:
            skipped.setdefault("sliding window FD", "no judge network for this data")

    references = [m for m in measures if m.kind == "sb" and m.name.startswith("forward-backward")]
    differences = [_difference(ref, m) for m in measures if m.kind == "nl" for ref in references]
    settings = {"n": n, "samples": samples, "sampler_steps": sampler_steps, "steps_per_unit": steps_per_unit,
                "recovery_steps_per_unit": recovery_steps_per_unit, "widths": list(widths),
                "window_step": window_step, "resamples": resamples, "seed": seed, "class_alpha": CLASS_ALPHA,
                "min_accuracy": MIN_ACCURACY, "model": None if model is None else model.describe(),
                "sliding_judge": None if judge is None else judge.description,
                "cmi_run": None if cmi_run is None else {key: cmi_run.get(key) for key in CMI_RUN_FIELDS},
                "conditioning": None if conditioning is None else conditioning.settings}
    return Concurrence(t=ts, radii=radii, patches=patches, speciation=spec, gap=gap, recovery=recovery, cmi=cmi,
                       sliding=sliding, measures=measures, differences=differences, settings=settings,
                       skipped=skipped, seconds=time.perf_counter() - start,
                       conditioning={} if conditioning is None else conditioning.entries)


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
    if data["sliding"]:
        judge = data["settings"].get("sliding_judge")
        rows += ["", "sliding window: accuracy (and judge FD) per window centre; the samplers alone at the right"
                 + ("" if judge is None else f"; a sample is correct when {judge}")]
        for entry in data["sliding"].values():
            fd = lambda e, i=None: ("" if "fd" not in e else
                                    f" FD {e['fd'] if i is None else e['fd'][i]:.3g}")
            cells = [f"{c:.2f}: {a:.3f}{fd(entry, i)}" for i, (c, a) in enumerate(zip(entry["centres"],
                                                                                     entry["accuracy"]))]
            alone = [f"{name.replace('_', '-')} {entry[name]['accuracy']:.3f}{fd(entry[name])}"
                     for name in ("all_global", "all_local") if name in entry]
            rows.append(f"  r = {entry['radius']}, w = {entry['width']:g}: " + "; ".join(cells)
                        + (f" | {'; '.join(alone)}" if alone else ""))
    if data.get("conditioning"):
        rows += ["", ("conditioning window: class accuracy per label-window centre; the label everywhere / nowhere "
                      "at the right")]
        for entry in data["conditioning"].values():
            cells = [f"{c:.2f}: {a:.3f}" for c, a in zip(entry["centres"], entry["accuracy"])]
            rows.append(f"  w = {entry['width']:g}: " + "; ".join(cells) + f" | everywhere "
                        f"{entry['label_everywhere']['accuracy']:.3f}; nowhere {entry['label_nowhere']['accuracy']:.3f}")
    for key, reason in data["skipped"].items():
        rows.append(f"skipped: {key}: {reason}")
    s = data["settings"]
    rows.append(f"n = {s['n']} test images, {s['samples']} samples per window, {s['resamples']} bootstrap "
                f"resamples; {data['seconds']:.1f} s")
    return "\n".join(rows)
