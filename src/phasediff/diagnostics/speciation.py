"""Symmetry breaking (speciation): from which noise level on does generation no longer remember the class?

Forward-backward test (SCIENCE.md sections 2 and 7): noise a clean image x_0 of class k to
x_t = (1 - t) x_0 + t z, bring it back to t = 0 with a sampler, classify the result. P(kept | t) is the
fraction of images whose class is still k; it falls from 1 towards chance (1 / classes) across a narrow window.
``t_sb`` is where it falls below halfway, (1 + chance) / 2, with a bootstrap interval over the images. Two
samplers are run on the same noised images: the probability-flow ODE (`sampling.euler`, deterministic) and
the ancestral sampler (`sampling.ancestral`, the reverse SDE in the limit of many steps).

Spectral estimate (Biroli et al.): the class is decided when the signal along the top principal direction
rises above the noise, (1 - t)^2 Lambda = t^2, i.e. t_S = sqrt(Lambda) / (1 + sqrt(Lambda)), Lambda the top
eigenvalue of the data covariance.

Exact reference, gmm2 (x_0 = s mu 1 + sigma g, n pixels; K_t = (1 - t) |mu| sqrt(n / v), v = (1 - t)^2 sigma^2
+ t^2): given s the image sum S of x_t is N(a s mu n, n v) (a = 1 - t), and P(s | x_t) = sigmoid(2 s a mu S / v).

- The exact ODE keeps the sign of S (the velocity of S is odd in S; Euler keeps it too when each step is at most
  the current t), so P(kept | t) = P(sign S = s) = Phi(K_t).
- The exact reverse SDE draws x_0 ~ p(x_0 | x_t), whose component is s with probability P(s | x_t); writing
  S = a s mu n + sqrt(n v) z, 2 a mu S s / v = 2 K_t^2 + 2 K_t z, so P(kept | t) = E_z sigmoid(2 K_t^2 + 2 K_t z).
- Covariance sigma^2 I + mu^2 1 1^T: Lambda = sigma^2 + mu^2 n (eigenvector 1).

(Both closed forms count the component of the returned image; the sign of its sum differs from the component
with probability Phi(-|mu| sqrt(n) / sigma), below 1e-11 for n >= 49 at mu = sigma = 1.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import expit, ndtr

from phasediff.data.gmm2 import TwoComponentMixture, expect_standard_normal
from phasediff.diagnostics.recovery import (
    check_batch_size,
    check_images,
    recovery_steps,
)
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise, check_times
from phasediff.progress import progress
from phasediff.sampling import SAMPLERS, STOCHASTIC, time_grid
from phasediff.stats import crossings, seeded_generator, seeded_noise, wilson_interval

Classify = Callable[[torch.Tensor], np.ndarray]  # images (N, C, H, W) -> classes (N,)
METHODS = {"ode": "euler", "sde": "ancestral"}  # the two curves and the sampler of each
BOOTSTRAP = 1000


# --- spectral estimate ---------------------------------------------------------------------------------------

def spectral_time(covariance) -> float:
    """t_S = sqrt(Lambda) / (1 + sqrt(Lambda)), Lambda the top eigenvalue of the data covariance: where
    (1 - t)^2 Lambda = t^2."""
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1] or covariance.shape[0] < 1:
        raise PhasediffError(f"covariance must be a square matrix, got shape {covariance.shape}")
    return _spectral_time(np.linalg.eigvalsh(covariance)[-1])


def _spectral_time(top: float) -> float:
    root = math.sqrt(max(float(top), 0.0))
    return root / (1 + root)


def top_eigenvalue(images) -> float:
    """Largest eigenvalue of the empirical covariance of images (N, ...), from the smaller of the two Gram
    matrices of the centred data X (X^T X / (N - 1) and X X^T / (N - 1) share their nonzero eigenvalues)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if len(x) < 2:
        raise PhasediffError("the empirical covariance needs at least 2 images")
    x = x - x.mean(0)
    gram = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    return float(np.linalg.eigvalsh(gram / (len(x) - 1))[-1])


def gmm2_top_eigenvalue(model: TwoComponentMixture) -> float:
    """Lambda = sigma^2 + mu^2 n for the covariance sigma^2 I + mu^2 1 1^T of gmm2 (n = L^2 pixels)."""
    return model.sigma**2 + model.mu**2 * model.L**2


# --- exact curves for gmm2 -----------------------------------------------------------------------------------

def gmm2_kept_ode(model: TwoComponentMixture, t) -> np.ndarray:
    """Probability-flow ODE: P(kept | t) = Phi(K_t), K_t = K(t, n)."""
    return ndtr(model.K(t, model.L**2))


def _sde_kept_of_K(K) -> np.ndarray:
    """E_z sigmoid(2 K^2 + 2 K z), z ~ N(0, 1), by Gauss-Hermite quadrature."""
    K = np.atleast_1d(np.asarray(K, dtype=np.float64))[:, None]
    return expect_standard_normal(lambda z: expit(2 * K**2 + 2 * K * z[None, :]))


def gmm2_kept_sde(model: TwoComponentMixture, t) -> np.ndarray:
    """Exact reverse SDE: P(kept | t) = E[P(s | x_t)] = E_z sigmoid(2 K_t^2 + 2 K_t z)."""
    return _sde_kept_of_K(model.K(np.atleast_1d(t), model.L**2))


def _t_of_K(model: TwoComponentMixture, K: float) -> float:
    """The t with K_t = K: with u = (1 - t) / t, K^2 = u^2 mu^2 n / (u^2 sigma^2 + 1), so
    u = K / sqrt(mu^2 n - K^2 sigma^2) and t = 1 / (1 + u) (needs K < K_0 = |mu| sqrt(n) / sigma)."""
    return 1 / (1 + K / math.sqrt(model.mu**2 * model.L**2 - K**2 * model.sigma**2))


def gmm2_t_sb(model: TwoComponentMixture, level: float = 0.75) -> dict[str, float | None]:
    """Exact crossing times of ``level`` by both curves (None when even t = 0 keeps less than ``level``):
    the ODE's from K = Phi^{-1}(level) in closed form, the SDE's K by root finding."""
    k0 = float(model.K(0.0, model.L**2))
    curves = {"ode": ndtr, "sde": lambda K: _sde_kept_of_K(K)[0]}
    return {name: _t_of_K(model, brentq(lambda K, f=curve: f(K) - level, 0.0, k0)) if 0.5 < level < curve(k0)
            else None for name, curve in curves.items()}


# --- class rules ---------------------------------------------------------------------------------------------

def sign_classes(images, centre: float = 0.0, sign: float = 1.0) -> np.ndarray:
    """Class 1 where sign * (mean pixel - centre) > 0, else 0: gmm2 (centre 0, sign of mu) and Ising in {0, 1}
    (centre 0.5: the sign of the magnetisation; m = 0 counts as class 0)."""
    x = torch.as_tensor(images).flatten(1).double()
    return (sign * (x.mean(1) - centre) > 0).long().cpu().numpy()


def judge_classes(classifier) -> Classify:
    """The most probable class of the project's classifier, on images clamped to [0, 1]."""
    from phasediff.metrics import classify

    return lambda images: classify(classifier, torch.as_tensor(images).float().clamp(0, 1).cpu())[1].argmax(1)


def data_kind(spec: str) -> str | None:
    """The model name of a synthetic spec (gmm2, ising, ...), None for named datasets and files."""
    from phasediff.data.registry import MODELS, is_file_spec
    from phasediff.specs import parse_spec

    name = None if is_file_spec(spec) else parse_spec(spec)[0]
    return name if name in MODELS else None


def class_rule(spec: str, data, judge=None) -> tuple[Classify, int, np.ndarray]:
    """(classify, number of classes, the class of each of data's images) for the forward-backward test:
    gmm2 by the sign of mu times the image sum (class 1: component s = +1, the data's labels), Ising by the sign
    of the magnetisation (class of each clean image from the same rule), other labelled data by a classifier
    checkpoint ``judge`` (default: the committed one of the dataset)."""
    from phasediff.report.samples import default_judge, load_judge

    kind = data_kind(spec)
    if kind == "gmm2":
        return (lambda x: sign_classes(x, 0.0, float(np.sign(data.model.mu)))), 2, data.labels
    if kind == "ising":
        rule = lambda x: sign_classes(x, 0.5)
        return rule, 2, rule(data.images)
    if data.labels is None:
        raise PhasediffError(f"{spec} has no labels: the forward-backward test needs a class per image (gmm2 and "
                             "Ising need none: their class is a sign)")
    classifier = load_judge(judge or default_judge(spec))
    return judge_classes(classifier), int(classifier.config()["num_classes"]), data.labels


def load_denoiser(spec: str, model: str, local_radius: int | None = None, device: str = "cpu"):
    """``model`` "exact": the exact posterior mean of gmm2 (strictly local of ``local_radius`` if given); else a
    denoiser checkpoint path, loaded on ``device``."""
    from phasediff.data.registry import load_model
    from phasediff.denoisers import load, read_info
    from phasediff.denoisers.mixture2 import TwoComponentDenoiser

    if model == "exact":
        if data_kind(spec) != "gmm2":
            raise PhasediffError(f"--model exact needs gmm2 data (the exact denoiser of {spec!r} is not available)")
        mixture = load_model(spec)
        if local_radius is not None and not 0 <= local_radius <= mixture.L - 1:
            raise PhasediffError(f"--local-radius must lie in 0..{mixture.L - 1} for {mixture.L}x{mixture.L} images, "
                                 f"got {local_radius}")
        return TwoComponentDenoiser.of(mixture, local_radius).to(device)
    if local_radius is not None:
        raise PhasediffError("--local-radius applies to --model exact only (a checkpoint has its own radius)")
    if read_info(model).get("model", {}).get("arch") == "classifier":
        raise PhasediffError(f"{model} is a classifier, not a denoiser")
    return load(model, device)


# --- forward-backward ----------------------------------------------------------------------------------------

def check_ts(ts) -> list[float]:
    """Forward-backward times: a non-empty increasing list in (0, 1]."""
    ts = [float(t) for t in np.atleast_1d(check_times(ts, "t"))]
    if not ts or ts[0] <= 0 or any(b <= a for a, b in pairwise(ts)):
        raise PhasediffError(f"times must be increasing and in (0, 1], got {ts[:6]}")
    return ts


def forward_backward(denoiser, images, labels, classify: Classify, ts: Sequence[float], method: str = "euler",
                     steps_per_unit: float = 32, seed: int = 0, batch_size: int = 500,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """kept[i, j]: whether image j still has class labels[j] after noising to ts[i] and sampling back to 0.

    The noise of time i is `seeded_noise(shape, seed, i)` (the same for every method: common random numbers);
    the path back is `time_grid(max(1, ceil(t steps_per_unit)), t, 0)`; a stochastic sampler's step noise comes
    from `seeded_generator(seed, i, 1)`, consumed batch after batch."""
    if method not in SAMPLERS:
        raise PhasediffError(f"unknown sampler {method!r} (choose from {', '.join(SAMPLERS)})")
    if not (steps_per_unit > 0 and math.isfinite(steps_per_unit)):
        raise PhasediffError(f"steps_per_unit must be a positive number, got {steps_per_unit!r}")
    images, ts, batch_size = check_images(images), check_ts(ts), check_batch_size(batch_size)
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise PhasediffError(f"need one label per image, got {labels.shape} for {len(images)} images")
    kept = np.zeros((len(ts), len(images)), dtype=bool)
    for i, t in enumerate(progress(ts, desc=f"forward-backward ({method})")):
        times = time_grid(recovery_steps(t, steps_per_unit, None), t_max=t, t_min=0.0)
        x_t = add_noise(images, t, seeded_noise(tuple(images.shape), seed, i))
        extra = {"generator": seeded_generator(seed, i, 1)} if method in STOCHASTIC else {}
        out = torch.cat([SAMPLERS[method](denoiser, x_t[b:b + batch_size].to(device), times, **extra).cpu()
                         for b in range(0, len(images), batch_size)])
        kept[i] = classify(out) == labels
    return kept


def kept_curve(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(P(kept), Wilson 95% low, high, binomial standard error sqrt(p (1 - p) / n)) per time of kept (T, N)."""
    n = kept.shape[1]
    k = kept.sum(1)
    low, high = wilson_interval(k, n)
    p = k / n
    return p, low, high, np.sqrt(p * (1 - p) / n)


def t_sb(ts, kept_fraction, level: float) -> float | None:
    """The first t where P(kept) falls below ``level`` (linear between grid points): the start of the span where
    1 - P > 1 - level (`stats.crossings`); None if it never does on the grid, ts[0] if it already has there."""
    span = crossings(ts, 1 - np.asarray(kept_fraction, float), 1 - level)
    return None if span is None else span[0]


def bootstrap_t_sb(ts, kept: np.ndarray, level: float, seed: int = 0,
                   resamples: int = BOOTSTRAP) -> tuple[float | None, float | None]:
    """95% percentile interval of `t_sb` over bootstrap resamples of the images (columns of kept); an end that
    falls on resamples that never cross within the grid is None (open)."""
    rng = np.random.default_rng([int(seed), 7])
    weights = rng.multinomial(kept.shape[1], np.full(kept.shape[1], 1 / kept.shape[1]), size=resamples)
    curves = kept.astype(float) @ weights.T / kept.shape[1]  # (T, resamples)
    found = [t_sb(ts, curves[:, b], level) for b in range(resamples)]
    times = np.array([np.inf if f is None else f for f in found])
    ends = np.quantile(times, [0.025, 0.975], method="inverted_cdf")
    return tuple(None if not np.isfinite(e) else float(e) for e in ends)


# --- the result ----------------------------------------------------------------------------------------------

@dataclass
class Speciation:
    """Forward-backward curves (ODE: Euler; SDE: ancestral) with Wilson 95% intervals, t_sb with bootstrap
    intervals, the spectral t_S, and for gmm2 the curves of the exact (global) reverse processes, their
    crossings and z = (kept - exact) / s.e. (s.e. from the exact p): the Bayes reference, also beside a local or
    trained denoiser."""

    t: list[float]
    kept: np.ndarray
    kept_low: np.ndarray
    kept_high: np.ndarray
    kept_stderr: np.ndarray
    kept_sde: np.ndarray
    kept_sde_low: np.ndarray
    kept_sde_high: np.ndarray
    kept_sde_stderr: np.ndarray
    level: float
    t_sb: float | None
    t_sb_interval: tuple[float | None, float | None]
    t_sb_sde: float | None
    t_sb_sde_interval: tuple[float | None, float | None]
    spectral_t: float
    spectral_t_empirical: float
    n: int
    classes: int
    steps: list[int]
    seconds: float
    exact: dict | None = None

    def to_dict(self) -> dict:
        out = {key: (value.tolist() if isinstance(value, np.ndarray) else value) for key, value in vars(self).items()
               if key != "exact"}
        out["t_sb_interval"], out["t_sb_sde_interval"] = list(self.t_sb_interval), list(self.t_sb_sde_interval)
        if self.exact is not None:
            out.update({f"exact_{key}": value for key, value in self.exact.items()})
        return out


def gmm2_reference(model: TwoComponentMixture, ts, result_n: int, kept, kept_sde, level: float) -> dict:
    """The exact curves of gmm2 at ts, their crossings of ``level`` and the z-scores of measured curves."""
    ode, sde = gmm2_kept_ode(model, ts), gmm2_kept_sde(model, ts)
    z = lambda measured, exact: ((measured - exact) / np.sqrt(exact * (1 - exact) / result_n).clip(1e-300)).tolist()
    crossing = gmm2_t_sb(model, level)
    return {"kept": ode.tolist(), "kept_sde": sde.tolist(), "z": z(kept, ode), "z_sde": z(kept_sde, sde),
            "t_sb": crossing["ode"], "t_sb_sde": crossing["sde"]}


def speciation(denoiser, images, labels, classify: Classify, ts: Sequence[float], classes: int = 2,
               model=None, steps_per_unit: float = 32, seed: int = 0, batch_size: int = 500,
               device: str | torch.device = "cpu", resamples: int = BOOTSTRAP) -> Speciation:
    """Forward-backward curves of both samplers and t_sb at level (1 + 1 / classes) / 2. ``model``: the exact
    model of the data; a `TwoComponentMixture` adds its closed forms and its exact Lambda (else t_S comes from
    the empirical covariance of ``images``)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise PhasediffError(f"classes must be an integer >= 2, got {classes!r}")
    ts, images = check_ts(ts), check_images(images)
    level = (1 + 1 / classes) / 2
    start = time.perf_counter()
    run = {name: forward_backward(denoiser, images, labels, classify, ts, method, steps_per_unit, seed, batch_size,
                                  device) for name, method in METHODS.items()}
    ode, sde = kept_curve(run["ode"]), kept_curve(run["sde"])
    empirical = _spectral_time(top_eigenvalue(images))
    exact = isinstance(model, TwoComponentMixture)
    return Speciation(
        t=ts, kept=ode[0], kept_low=ode[1], kept_high=ode[2], kept_stderr=ode[3],
        kept_sde=sde[0], kept_sde_low=sde[1], kept_sde_high=sde[2], kept_sde_stderr=sde[3], level=level,
        t_sb=t_sb(ts, ode[0], level), t_sb_interval=bootstrap_t_sb(ts, run["ode"], level, seed, resamples),
        t_sb_sde=t_sb(ts, sde[0], level), t_sb_sde_interval=bootstrap_t_sb(ts, run["sde"], level, seed, resamples),
        spectral_t=_spectral_time(gmm2_top_eigenvalue(model)) if exact else empirical,
        spectral_t_empirical=empirical, n=len(images), classes=classes,
        steps=[recovery_steps(t, steps_per_unit, None) for t in ts], seconds=time.perf_counter() - start,
        exact=gmm2_reference(model, ts, len(images), ode[0], sde[0], level) if exact else None)


def _time(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def speciation_table(result: Speciation) -> str:
    """The curves as a text table, then t_sb with its intervals and t_S."""
    exact = result.exact
    head = f"{'t':>6}  {'kept ODE [95%]':>22}  {'kept SDE [95%]':>22}"
    head += f"  {'exact ODE':>9} {'z':>5}  {'exact SDE':>9} {'z':>5}" if exact else ""
    rows = [head]
    for i, t in enumerate(result.t):
        row = (f"{t:6.3f}  {result.kept[i]:.3f} [{result.kept_low[i]:.3f}, {result.kept_high[i]:.3f}]  "
               f"{result.kept_sde[i]:.3f} [{result.kept_sde_low[i]:.3f}, {result.kept_sde_high[i]:.3f}]")
        if exact:
            row += (f"  {exact['kept'][i]:9.3f} {exact['z'][i]:5.1f}  {exact['kept_sde'][i]:9.3f} "
                    f"{exact['z_sde'][i]:5.1f}")
        rows.append(row)
    for name, value, interval, key in (("ODE", result.t_sb, result.t_sb_interval, "t_sb"),
                                       ("SDE", result.t_sb_sde, result.t_sb_sde_interval, "t_sb_sde")):
        line = f"t_sb {name} (P(kept) = {result.level:.3f}): {_time(value)} [{_time(interval[0])}, {_time(interval[1])}]"
        rows.append(line + (f"; exact {_time(exact[key])}" if exact else ""))
    rows.append(f"spectral t_S: {result.spectral_t:.4f} (empirical covariance: {result.spectral_t_empirical:.4f}); "
                f"n = {result.n}, {result.seconds:.1f} s")
    return "\n".join(rows)
