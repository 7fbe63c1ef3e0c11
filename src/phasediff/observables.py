"""Physical observables as sample metrics for lattice data: generated configurations against the model itself.

Ising data (`ising_observables`, 2D Ising on an L x L torus, J = 1) is compared with fresh reference samples of the
same model. Generated images are real-valued, so every image is read as spins by thresholding at 0.5:
x > 0.5 -> s = +1, x <= 0.5 -> s = -1 (the data maps spin +1 to 1 and -1 to 0, so reference images are unchanged).
Per configuration c, with N = L^2 sites and A_c(d) = (1/N) sum_x s_x s_{x+d} (periodic, computed by FFT):

    energy per spin   e_c = -(A_c(1, 0) + A_c(0, 1))          (`phasediff.data.ising.energy_per_spin`)
    magnetisation     m_c = (1/N) sum_x s_x
    two-point         G_c(d) = (A_c(d, 0) + A_c(0, d)) / 2,  d = 0..L/2  (both axes, all sites)
    structure factor  S_c(k) = |sum_x s_x exp(-i k.x)|^2 / N

and over the n configurations (<.> the mean over configurations):

    C(d)      = <G_c(d)> - <m_c>^2             (connected function, signed <m> of the whole set)
    chi(0)    = <S_c(0)> - N <m_c>^2 = sum_d C(d) over all torus displacements d
    chi(kmin) = <S_c(2 pi/L, 0) + S_c(0, 2 pi/L)> / 2
    xi_2      = sqrt(chi(0) / chi(kmin) - 1) / (2 sin(pi / L))   (second-moment correlation length, 0 when noise
                                                                   makes chi(0) < chi(kmin))

The subtraction uses the signed mean magnetisation of the set, not <|m|> and not each configuration's own m: then
C(d) is exact at T = infinity (C(0) = 1, C(d >= 1) = 0 in expectation, where the other choices are biased by ~1/N),
and chi(kmin) is untouched by it. Below T_c, where both signs occur, <m> ~ 0 and C(d) levels off at <m^2> ~ m_0^2
for large d: that plateau is the long-range order (a local generator whose samples form domains of both signs
loses it), and xi_2 then grows with L. Generated and reference sets are treated identically.

Gaussian fields (`gaussian_observables`, grf / gmrf) are compared with the exact covariance S: the sample
covariance about the model's exact mean 0, S_hat = (1/n) sum_c x_c x_c^T (so a shifted mean counts as an error
too), its mean absolute error per Chebyshev distance d = max(|dy|, |dx|) over all pixel pairs at that distance,
and its relative Frobenius error ||S_hat - S||_F / ||S||_F. The same errors for n exact samples give the noise
floor a perfect generator reaches.

A point value is the plug-in estimate on all configurations. Its 95% interval comes from the bootstrap over
configurations, the generated and the reference sets resampled independently: the percentile interval for means,
C(d), xi_2 and the energy difference; for distances (W1, the covariance errors) the estimate +- 1.96 bootstrap
standard errors, floored at 0, as their bootstrap draws are biased upward (`_spread_interval`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from phasediff.data.ising import energy_per_spin, magnetisation, to_spins
from phasediff.errors import PhasediffError
from phasediff.stats import Z95

THRESHOLD = 0.5  # an image value above it is spin +1, at or below it spin -1
ROUNDS = 200  # bootstrap rounds
# The covariance errors take only the bootstrap's standard error, for which 50 rounds suffice; a round costs
# n L^4 / 2 multiply-adds (1,000 fields of 32 x 32: ~1 s per 50 rounds on one core).
GAUSSIAN_ROUNDS = 50
PRODUCT_BLOCK = 1 << 22  # configurations x pixel pairs per block of products x_i x_j (16 MB in float32)
LEVEL = 0.95  # two-sided interval level
ENERGY_TOLERANCE = 0.03  # the verdict's bounds (`matches`): |E_gen - E_ref| per spin,
W1_TOLERANCE = 0.05      # W1 between the |m| distributions,
CORRELATION_TOLERANCE = 0.02  # and max_{1 <= d <= L/4} |C_gen(d) - C_ref(d)|


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval [low, high]; floats, or arrays of one value per distance d."""

    value: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray

    def to_dict(self) -> dict:
        return {key: np.asarray(getattr(self, key), dtype=float).tolist() for key in ("value", "low", "high")}


@dataclass(frozen=True)
class IsingReport:
    """Observables of n generated configurations and n_reference reference ones; see the module docstring."""

    L: int
    n: int
    n_reference: int
    energy: Interval                   # <e_c> of the generated set
    energy_reference: Interval
    energy_difference: Interval        # generated - reference
    abs_magnetisation: Interval        # <|m_c|>
    abs_magnetisation_reference: Interval
    w1_abs_magnetisation: Interval     # W1 between the |m_c| distributions of the two sets
    correlation: Interval              # C(d), d = 0..L/2
    correlation_reference: Interval
    correlation_difference: Interval   # max over 1 <= d <= L/4 of |C_gen(d) - C_ref(d)|
    correlation_length: Interval       # xi_2
    correlation_length_reference: Interval

    def to_dict(self) -> dict:
        out = {"L": self.L, "n": self.n, "n_reference": self.n_reference, "threshold": THRESHOLD}
        for key, value in vars(self).items():
            if isinstance(value, Interval):
                out[key] = value.to_dict()
        return out


@dataclass(frozen=True)
class GaussianReport:
    """Covariance errors of n generated fields against the exact covariance; see the module docstring."""

    L: int
    n: int
    covariance_error: Interval             # mean |S_hat - S| per Chebyshev distance d = 0..L-1
    relative_frobenius: Interval           # ||S_hat - S||_F / ||S||_F
    covariance_error_floor: np.ndarray | None   # the same for n exact samples (None without them)
    relative_frobenius_floor: float | None

    def to_dict(self) -> dict:
        floor = self.covariance_error_floor
        return {"L": self.L, "n": self.n, "distance": "chebyshev",
                "covariance_error": self.covariance_error.to_dict(),
                "relative_frobenius": self.relative_frobenius.to_dict(),
                "covariance_error_floor": None if floor is None else np.asarray(floor, dtype=float).tolist(),
                "relative_frobenius_floor": self.relative_frobenius_floor}


def matches(report: IsingReport, energy_tol: float = ENERGY_TOLERANCE, w1_tol: float = W1_TOLERANCE,
            correlation_tol: float = CORRELATION_TOLERANCE) -> bool:
    """The verdict: |E_gen - E_ref| <= energy_tol (per spin), W1(|m| distributions) <= w1_tol and
    max_{1 <= d <= L/4} |C_gen(d) - C_ref(d)| <= correlation_tol.

    The energy sees only C(1); the two-point function up to L/4 is what tells a generator whose correlations stop
    at its radius from one that reproduces them."""
    return bool(abs(report.energy_difference.value) <= energy_tol and report.w1_abs_magnetisation.value <= w1_tol
                and report.correlation_difference.value <= correlation_tol)


# ---------------------------------------------------------------------- bootstrap


def _check_rounds(rounds: int) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise PhasediffError(f"bootstrap rounds must be an integer >= 1, got {rounds!r}")
    return int(rounds)


def _resample(n: int, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap indices (rounds, n): each row draws n of the n configurations with replacement."""
    return rng.integers(0, n, size=(rounds, n))


def _counts(index: np.ndarray) -> np.ndarray:
    """How often each configuration occurs in each bootstrap row: (rounds, n) from indices (rounds, n)."""
    rounds, n = index.shape
    flat = index + n * np.arange(rounds)[:, None]
    return np.bincount(flat.ravel(), minlength=rounds * n).reshape(rounds, n).astype(np.float64)


def _means(per_configuration: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bootstrap means (rounds, ...) of per-configuration values (n, ...): counts @ values / n."""
    n = per_configuration.shape[0]
    flat = per_configuration.reshape(n, -1)
    return (counts @ flat / n).reshape(counts.shape[0], *per_configuration.shape[1:])


def _as_interval(value, low, high) -> Interval:
    """Floats for a scalar ``value``, float arrays otherwise."""
    if np.ndim(value) == 0:
        return Interval(float(value), float(low), float(high))
    return Interval(np.asarray(value, dtype=float), np.asarray(low, dtype=float), np.asarray(high, dtype=float))


def _interval(value, draws: np.ndarray) -> Interval:
    """The point ``value`` and the central LEVEL percentile interval of the bootstrap ``draws`` (rounds, ...)."""
    with np.errstate(invalid="ignore"):  # draws may be inf (xi_2 of aligned configurations)
        low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    return _as_interval(value, low, high)


def _spread_interval(value, draws: np.ndarray) -> Interval:
    """``value`` +- Z95 bootstrap standard errors, floored at 0: the interval of a distance (W1, an error norm).

    A resampled set repeats configurations, which adds its own noise to a distance that is partly noise itself,
    so the bootstrap draws sit above the estimate and their percentiles can miss it; their spread still measures
    how much the distance varies between sets of n configurations.
    """
    spread = Z95 * draws.std(axis=0, ddof=1) if len(draws) > 1 else np.zeros_like(np.asarray(value, dtype=float))
    return _as_interval(value, np.clip(value - spread, 0, None), value + spread)


# ---------------------------------------------------------------------- Wasserstein distance


def wasserstein1(a, b) -> np.ndarray:
    """W1 between the empirical distributions of ``a`` and ``b`` along their last axis (leading axes broadcast):

        W1 = integral_0^1 |Q_a(u) - Q_b(u)| du,

    Q the quantile functions. Q_a steps at u = i / n_a and Q_b at u = j / n_b, so between consecutive steps both
    are constant: with the steps as integers c = u n_a n_b, Q_a = sorted(a)[c // n_b] and Q_b = sorted(b)[c // n_a].
    """
    a, b = np.sort(np.asarray(a, dtype=float), axis=-1), np.sort(np.asarray(b, dtype=float), axis=-1)
    n_a, n_b = a.shape[-1], b.shape[-1]
    steps = np.union1d(np.arange(n_a) * n_b, np.arange(n_b) * n_a)
    widths = np.diff(np.append(steps, n_a * n_b)) / (n_a * n_b)
    return (np.abs(a[..., steps // n_b] - b[..., steps // n_a]) * widths).sum(axis=-1)


# ---------------------------------------------------------------------- Ising


def lattice_spins(images) -> np.ndarray:
    """Spins in {-1, +1} (int8, shape (n, L, L)) from images (n, 1, L, L): x > 0.5 -> +1, else -1."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] or images.shape[0] < 1:
        raise PhasediffError(f"lattice images must have shape (n, 1, L, L), got {images.shape}")
    if not np.all(np.isfinite(images)):
        raise PhasediffError("lattice images contain NaN or infinite values")
    return to_spins(images[:, 0], threshold=THRESHOLD)


@dataclass(frozen=True)
class _Configurations:
    """Per-configuration statistics of a set of spins (n, L, L); see the module docstring for the formulas."""

    energy: np.ndarray        # e_c, (n,)
    m: np.ndarray             # m_c, (n,)
    two_point: np.ndarray     # G_c(d), (n, L/2 + 1)
    chi_zero: np.ndarray      # S_c(0) = N m_c^2, (n,)
    chi_kmin: np.ndarray      # (S_c(2 pi/L, 0) + S_c(0, 2 pi/L)) / 2, (n,)

    @classmethod
    def of(cls, spins: np.ndarray) -> _Configurations:
        L = spins.shape[-1]
        power = np.abs(np.fft.rfft2(spins.astype(np.float64))) ** 2 / L**2   # S_c(k)
        auto = np.fft.irfft2(power, s=(L, L))                                # A_c(d) = (1/N) sum_x s_x s_{x+d}
        d = np.arange(L // 2 + 1)
        return cls(energy=energy_per_spin(spins), m=magnetisation(spins),
                   two_point=(auto[:, d, 0] + auto[:, 0, d]) / 2,
                   chi_zero=power[:, 0, 0], chi_kmin=(power[:, 1, 0] + power[:, 0, 1]) / 2)


def correlation_function(mean_two_point: np.ndarray, mean_m: np.ndarray) -> np.ndarray:
    """C(d) = <G_c(d)> - <m_c>^2 (leading axes: bootstrap rounds)."""
    return mean_two_point - np.asarray(mean_m)[..., None] ** 2


def correlation_length(chi_zero: np.ndarray, chi_kmin: np.ndarray, L: int) -> np.ndarray:
    """xi_2 = sqrt(chi(0) / chi(kmin) - 1) / (2 sin(pi / L)), the root clipped at 0 (inf when chi(kmin) = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(chi_zero, dtype=float) / np.asarray(chi_kmin, dtype=float)
    return np.sqrt(np.clip(ratio - 1, 0, None)) / (2 * np.sin(np.pi / L))


def _set_observables(stats: _Configurations, index: np.ndarray, L: int) -> dict[str, tuple]:
    """(point value, bootstrap draws) of <e>, <|m|>, C(d) and xi_2 of one set; ``index`` its bootstrap rows."""
    N, counts = L * L, _counts(index)
    mean_m, draws_m = stats.m.mean(), _means(stats.m, counts)
    chi_zero = stats.chi_zero.mean() - N * mean_m**2
    draws_chi_zero = _means(stats.chi_zero, counts) - N * draws_m**2
    return {
        "energy": (stats.energy.mean(), _means(stats.energy, counts)),
        "abs_m": (np.abs(stats.m).mean(), _means(np.abs(stats.m), counts)),
        "correlation": (correlation_function(stats.two_point.mean(0), mean_m),
                        correlation_function(_means(stats.two_point, counts), draws_m)),
        "xi": (correlation_length(chi_zero, stats.chi_kmin.mean(), L),
               correlation_length(draws_chi_zero, _means(stats.chi_kmin, counts), L)),
    }


def _largest_gap(correlation: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """max_{1 <= d <= L/4} |C(d) - C_ref(d)| of arrays (..., L/2 + 1) (leading axes: bootstrap rounds)."""
    quarter = (correlation.shape[-1] - 1) // 2
    return np.abs(correlation[..., 1:quarter + 1] - reference[..., 1:quarter + 1]).max(axis=-1)


def ising_observables(samples, reference, rounds: int = ROUNDS, seed: int = 0) -> IsingReport:
    """Energy, |m|, C(d) and xi_2 of generated ``samples`` against ``reference`` samples of the same Ising model.

    Both are images (n, 1, L, L) read as spins by `lattice_spins` (threshold 0.5). Intervals: `ROUNDS` bootstrap
    rounds over configurations, the two sets resampled independently (the difference and W1 too).
    """
    generated, ref = lattice_spins(samples), lattice_spins(reference)
    if generated.shape[1:] != ref.shape[1:]:
        raise PhasediffError(f"samples of shape {generated.shape[1:]} do not match the reference {ref.shape[1:]}")
    rounds, L = _check_rounds(rounds), generated.shape[-1]
    rng = np.random.default_rng(seed)
    index_gen, index_ref = _resample(len(generated), rounds, rng), _resample(len(ref), rounds, rng)
    stats_gen, stats_ref = _Configurations.of(generated), _Configurations.of(ref)
    gen, refs = _set_observables(stats_gen, index_gen, L), _set_observables(stats_ref, index_ref, L)
    abs_gen, abs_ref = np.abs(stats_gen.m), np.abs(stats_ref.m)
    return IsingReport(
        L=L, n=len(generated), n_reference=len(ref),
        energy=_interval(*gen["energy"]), energy_reference=_interval(*refs["energy"]),
        energy_difference=_interval(gen["energy"][0] - refs["energy"][0], gen["energy"][1] - refs["energy"][1]),
        abs_magnetisation=_interval(*gen["abs_m"]), abs_magnetisation_reference=_interval(*refs["abs_m"]),
        w1_abs_magnetisation=_spread_interval(wasserstein1(abs_gen, abs_ref),
                                              wasserstein1(abs_gen[index_gen], abs_ref[index_ref])),
        correlation=_interval(*gen["correlation"]), correlation_reference=_interval(*refs["correlation"]),
        correlation_difference=_spread_interval(_largest_gap(gen["correlation"][0], refs["correlation"][0]),
                                                _largest_gap(gen["correlation"][1], refs["correlation"][1])),
        correlation_length=_interval(*gen["xi"]), correlation_length_reference=_interval(*refs["xi"]),
    )


# ---------------------------------------------------------------------- Gaussian fields


def _pairs(L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pixel pairs i <= j of an L x L grid (row-major): (i, j, Chebyshev distance max(|dy|, |dx|), weight),
    the weight 2 for i < j as the pair stands for (i, j) and (j, i) of the symmetric matrix, 1 for i = j."""
    i, j = np.triu_indices(L * L)
    (yi, xi), (yj, xj) = np.divmod(i, L), np.divmod(j, L)
    return i, j, np.maximum(np.abs(yi - yj), np.abs(xi - xj)), np.where(i == j, 1.0, 2.0)


def _fields(images, covariance: np.ndarray) -> np.ndarray:
    """Images (n, 1, L, L) as rows (n, L^2), checked against the (L^2, L^2) covariance."""
    images = np.asarray(images)
    pixels = covariance.shape[0]
    L = math.isqrt(pixels)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2:] != (L, L) or len(images) < 1:
        raise PhasediffError(f"field images must have shape (n, 1, {L}, {L}), got {images.shape}")
    if not np.all(np.isfinite(images)):
        raise PhasediffError("field images contain NaN or infinite values")
    return images.reshape(len(images), pixels).astype(np.float64)


def _covariance_errors(x: np.ndarray, weights: np.ndarray, covariance: np.ndarray,
                       L: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row w of ``weights`` (rows, n), the second moment S_w = (1/n) sum_c w_c x_c x_c^T of the fields
    ``x`` (n, L^2) against S = ``covariance``: (mean |S_w - S| over the pixel pairs at each Chebyshev distance,
    shape (rows, L); ||S_w - S||_F / ||S||_F, shape (rows,)).

    Over the pairs i <= j in blocks, as one product (x_i x_j) @ weights^T per block, so all rows share the work;
    in float32, which halves the time: the errors need ~1e-4, far above its rounding (~1e-7).
    """
    i, j, distance, pair_weight = _pairs(L)
    shells = csr_matrix((pair_weight, (np.arange(len(i)), distance)), shape=(len(i), L))  # (pairs, d) weights
    pixels, weights = np.ascontiguousarray(x.T, dtype=np.float32), weights.T.astype(np.float32) / len(x)
    absolute, squares = np.zeros((L, weights.shape[1])), np.zeros(weights.shape[1])
    step = max(1, PRODUCT_BLOCK // len(x))
    for start in range(0, len(i), step):
        pick = slice(start, start + step)
        error = (pixels[i[pick]] * pixels[j[pick]]) @ weights - covariance[i[pick], j[pick], None]  # (pairs, rows)
        absolute += shells[pick].T @ np.abs(error)
        squares += pair_weight[pick] @ error**2
    return absolute.T / np.bincount(distance, pair_weight), np.sqrt(squares) / np.linalg.norm(covariance)


def gaussian_observables(samples, covariance, reference=None, rounds: int = GAUSSIAN_ROUNDS,
                         seed: int = 0) -> GaussianReport:
    """Errors of the second moment S_hat = (1/n) sum_c x_c x_c^T of ``samples`` (n, 1, L, L) against the exact
    covariance S of a zero-mean field; the floor from the first n ``reference`` (exact) samples when given.

    Intervals: point +- 1.96 bootstrap standard errors, floored at 0 (see `_spread_interval`).
    """
    covariance = np.asarray(covariance, dtype=np.float64)
    x = _fields(samples, covariance)
    n, L, rounds = len(x), int(np.asarray(samples).shape[-1]), _check_rounds(rounds)
    counts = _counts(_resample(n, rounds, np.random.default_rng(seed)))
    by_distance, frobenius = _covariance_errors(x, np.vstack([np.ones(n), counts]), covariance, L)
    floor = floor_frobenius = None
    if reference is not None:
        exact = _fields(reference, covariance)
        if len(exact) < n:
            raise PhasediffError(f"the noise floor needs at least {n} reference samples, got {len(exact)}")
        floor, floor_frobenius = _covariance_errors(exact[:n], np.ones((1, n)), covariance, L)
        floor, floor_frobenius = floor[0], float(floor_frobenius[0])
    return GaussianReport(
        L=L, n=n,
        covariance_error=_spread_interval(by_distance[0], by_distance[1:]),
        relative_frobenius=_spread_interval(frobenius[0], frobenius[1:]),
        covariance_error_floor=floor, relative_frobenius_floor=floor_frobenius,
    )


def lattice_copies(samples, training, block: int = 2000) -> dict:
    """Memorisation of lattice samples: the fraction of generated configurations identical to a training one,
    and the median over samples of the nearest training configuration's Hamming distance (fraction of sites).

    With spins s, s' in {-1, +1}^N the Hamming distance is (N - s.s') / 2, so the nearest training
    configuration of every sample is one matrix product per block of training configurations.
    """
    generated = lattice_spins(samples).reshape(len(samples), -1).astype(np.float32)
    train = lattice_spins(training).reshape(len(training), -1).astype(np.float32)
    if generated.shape[1] != train.shape[1]:
        raise PhasediffError(f"samples of {generated.shape[1]} sites do not match training data of {train.shape[1]}")
    best = np.full(len(generated), -np.inf, dtype=np.float32)
    for start in range(0, len(train), block):
        best = np.maximum(best, (generated @ train[start:start + block].T).max(axis=1))
    sites = generated.shape[1]
    hamming = (sites - best) / 2 / sites
    return {"copied_fraction": float((hamming == 0).mean()), "nearest_hamming_median": float(np.median(hamming)),
            "n_training": len(train)}


class IsingFeatures:
    """A judge of lattice configurations by their physical observables, for Fréchet distances (the planner's
    quality on Ising data, where no classifier exists): per configuration c the features

        [e_c, |m_c|, G_c(1), ..., G_c(L/4), S_c(k_min) / N]

    (the per-configuration statistics behind `ising_observables`; spins read at THRESHOLD). ``logits`` are
    empty: there are no classes."""

    identity = "observables:ising-v1"  # what a plan judged by these features is keyed by

    def features_and_logits(self, images):
        import torch

        spins = lattice_spins(np.asarray(images))
        stats, L = _Configurations.of(spins), spins.shape[-1]
        features = np.column_stack([stats.energy, np.abs(stats.m), stats.two_point[:, 1:L // 4 + 1],
                                    stats.chi_kmin / L**2])
        return torch.as_tensor(features), torch.zeros(len(features), 0)
