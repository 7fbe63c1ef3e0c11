"""An exact check of the paper's local-recovery bound, TV(p, p_hat)^2 <= I(A:C|B) (and the sharper 2 TV^2 <= I).

The distribution. p = p_t, the data noised along the path x_t = (1 - t) x_0 + t z, over (A, B, C): A one
pixel, B the Chebyshev ring 1..r around it, C the rest.

The channel. Extra noise on A only, one step further along the same path: y = g x_A + s z with

    g = (1 - t - dt) / (1 - t),    s^2 = (t + dt)^2 - g^2 t^2,

the Gaussian channel that maps x_A at time t to x_A at time t + dt in distribution (for any data:
g (1 - t) x_0 + sqrt(g^2 t^2 + s^2) z' = (1 - t - dt) x_0 + (t + dt) z'). dt = 1/32 is one step of a 32-step
sampler; a larger dt tests the bound where TV is not tiny (dt = 1 - t sends y to pure noise).

The recovery. Draw a' from the Bayes posterior of the AB marginal, p(a' | y, b) ∝ p(a', b) N(y; g a', s^2),
and keep (b, c): p_hat(a', b, c) = ∫ da p(a, b, c) ∫ dy N(y; g a, s^2) p(a' | y, b). p and p_hat share the
(B, C) marginal, so

    TV(p, p_hat) = E_{(b,c) ~ p} TV(p(.|b,c), q(.|b,c)),   q(a'|b,c) = ∫ dy p(y|b,c) p(a'|y,b),
    I(A:C|B)     = E_{(b,c) ~ p} KL(p(.|b,c) || p(.|b)).

Bayes' rule turns q into a reweighting of p(a'|b) (this is what is computed):

    q(a'|b,c) = p(a'|b) E_{y ~ N(g a', s^2)} [ p(y|b,c) / p(y|b) ].

The reduction to a binary latent. In both systems A is independent of (B, C) given a binary latent lam:
x_A | lam ~ N(m_lam, v) (for gmm2 lam is the class s, m = -+(1 - t) mu, v = (1 - t)^2 sigma^2 + t^2; for an
enumerated spin system lam is the spin of A in {0, 1}, m = (1 - t) lam, v = t^2). Then every conditional of A
is a two-component mixture with the same components; only the weight of lam = 1 changes:
w_B = P(lam = 1 | x_B) = sigmoid(l_B) and w_BC = P(lam = 1 | x_B, x_C) = sigmoid(l_BC). With f_lam = N(m_lam, v),

    p(a|b)   = (1 - w_B) f_0(a) + w_B f_1(a),      p(a|b,c) likewise with w_BC,
    p(y|b,c) / p(y|b) = (1 - w_BC + w_BC rho(y)) / (1 - w_B + w_B rho(y)),
    rho(y) = N(y; g m_1, g^2 v + s^2) / N(y; g m_0, g^2 v + s^2) = exp(g (m_1 - m_0)(y - g (m_0 + m_1)/2) / (g^2 v + s^2)).

So the conditional TV and KL are functions of (l_B, l_BC) alone, computed by quadrature: a' on a uniform
trapezoid grid of ``GRID`` points over m_0 - 8 sqrt(v) .. m_1 + 8 sqrt(v) (two atoms when v = 0, the clean spin
system at t = 0), y by ``Y_NODES``-point Gauss-Hermite around g a'. The KL is the exact conditional
expectation over x_A of log p(x_A|x_B,x_C) - log p(x_A|x_B), so the CMI samples are Rao-Blackwellised in x_A
and paired with the TV samples (both are functions of the same (x_B, x_C)).

The outer expectation over (x_B, x_C):

- gmm2: given s = +1 (the other class is the mirror image), l_B = 2 K_B^2 + 2 K_B xi_B and l_C = 2 K_C^2 + 2 K_C xi_C
  with xi_B, xi_C independent N(0, 1), l_BC = l_B + l_C (K_R as in ``data/gmm2.py``): a 2-D Gauss-Hermite
  quadrature of n x n nodes; the reported error is |Q_n - Q_{n/2}| (an overestimate of the error of Q_n), for
  the CMI the larger of that and |Q_n - exact| (the closed form F(K) of ``data/gmm2.py``).
- enumerated spins (a 4 x 4 Ising torus: 2^16 configurations): exact draws x_t of p_t (a configuration from
  the Gibbs weights, then the noise), l_B and l_BC by summing the Gibbs weights times the Gaussian likelihoods
  of the observed pixels over all configurations; the reported error is the Monte Carlo standard error.

The slacks I - TV^2 and I - 2 TV^2 carry their own errors (delta method with the TV-CMI covariance for Monte
Carlo; for quadrature the sum of the errors of I and of c TV^2). A point violates a bound only if its slack is
below -(2 errors + ROUNDING): the float64 sums give |TV|, |I| ~ 1e-17 where both are exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit, logsumexp, rel_entr

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise, check_times
from phasediff.regions import tripartition

GRID = 401  # trapezoid points for x_A (and a'); TV changes by ~1e-4 (relative) from 201 to 401 points
Y_NODES = 24  # Gauss-Hermite nodes for the channel noise; 16 already agree with 48 to 6 digits
LOG_RHO_CAP = 300.0  # |log rho(y)| is clipped here, where p(y|b,c) / p(y|b) has long saturated
GRID_HALF_WIDTH = 8.0  # the x_A grid covers the component means +- this many standard deviations
CLEAN_FIELD = 1e3  # log-likelihood ratio of a noiseless pixel (t = 0): exp(-1e3) = 0 in float64
CHUNK = 256  # rows per block of the quadrature and enumeration sums
ROUNDING = 1e-12  # nats: below this a slack is rounding, not a violation


@dataclass(frozen=True)
class BoundPoint:
    """One (system, t, r, dt) check of TV^2 <= I and 2 TV^2 <= I, in nats; *_err is 1 s.e. (Monte Carlo) or a
    quadrature error estimate, ``cmi_exact`` the closed-form CMI where one exists."""

    system: str
    t: float
    r: int
    dt: float
    method: str
    tv: float
    tv_err: float
    cmi: float
    cmi_err: float
    slack: float
    slack_err: float
    sharp_slack: float
    sharp_slack_err: float
    cmi_exact: float | None = None

    @property
    def tv2(self) -> float:
        return self.tv**2

    @property
    def violation(self) -> bool:
        """TV^2 > I beyond two errors."""
        return self.slack < -2 * self.slack_err - ROUNDING

    @property
    def sharp_violation(self) -> bool:
        """2 TV^2 > I beyond two errors."""
        return self.sharp_slack < -2 * self.sharp_slack_err - ROUNDING

    def to_dict(self) -> dict:
        return {**asdict(self), "tv2": self.tv2, "two_tv2": 2 * self.tv2, "violation": self.violation,
                "sharp_violation": self.sharp_violation}


# ------------------------------------------------------------------ the channel and the conditional of A


def path_channel(t: float, dt: float) -> tuple[float, float]:
    """(g, s) of y = g x_A + s z, the map of x_t to x_{t+dt} in distribution: g = (1-t-dt)/(1-t),
    s^2 = (t+dt)^2 - g^2 t^2."""
    if not (0 <= t < 1 and 0 < dt <= 1 - t + 1e-12):
        raise PhasediffError(f"the channel needs 0 <= t < 1 and 0 < dt <= 1 - t, got t={t}, dt={dt}")
    g = max(1 - t - dt, 0.0) / (1 - t)
    return g, math.sqrt((t + dt) ** 2 - (g * t) ** 2)


def _a_quadrature(means: tuple[float, float], var: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes a_k of x_A and the masses g_lam(a_k) of the two components (2, K): trapezoid weights times
    N(a_k; m_lam, v), or the two atoms a = m_0, m_1 when v = 0."""
    m = np.asarray(means, dtype=np.float64)
    if var == 0:
        return m, np.eye(2)
    half = GRID_HALF_WIDTH * math.sqrt(var)
    a = np.linspace(m.min() - half, m.max() + half, GRID)
    step = np.full(GRID, a[1] - a[0])
    step[[0, -1]] /= 2
    return a, np.exp(-0.5 * (a[None] - m[:, None]) ** 2 / var) / math.sqrt(2 * math.pi * var) * step[None]


def conditional_tv_kl(l_b, l_bc, means: tuple[float, float], var: float, channel: tuple[float, float]):
    """TV(p(.|b,c), q(.|b,c)) and KL(p(.|b,c) || p(.|b)) for each pair of log-odds (l_B, l_BC) of lam = 1, where
    x_A | lam ~ N(m_lam, var) and q(a'|b,c) = p(a'|b) E_{y ~ N(g a', s^2)} p(y|b,c) / p(y|b). Arrays (N,).

    With w = sigmoid(l) and rho(y) = exp(u_y(y)) the likelihood ratio of the components of y:
    p(y|b,c) / p(y|b) = (1 - w_BC + w_BC rho) / (1 - w_B + w_B rho) (u_y clipped to +-LOG_RHO_CAP, where this
    ratio has long saturated)."""
    w_b, w_bc = (expit(np.asarray(v, dtype=np.float64))[:, None] for v in (l_b, l_bc))
    m0, m1 = means
    g, s = channel
    a, mass = _a_quadrature(means, var)
    xi, weights = np.polynomial.hermite_e.hermegauss(Y_NODES)
    y = g * a[:, None] + s * xi[None]  # (K, J)
    rho = np.exp(np.clip(g * (m1 - m0) * (y - g * (m0 + m1) / 2) / (g**2 * var + s**2), -LOG_RHO_CAP, LOG_RHO_CAP))
    tv, kl = np.empty(len(w_b)), np.empty(len(w_b))
    for start in range(0, len(w_b), CHUNK):
        rows = slice(start, start + CHUNK)
        wb, wbc = w_b[rows], w_bc[rows]
        p_b, p_bc = (1 - wb) * mass[0] + wb * mass[1], (1 - wbc) * mass[0] + wbc * mass[1]  # (n, K)
        ratio = (((1 - wbc[:, :, None]) + wbc[:, :, None] * rho) / ((1 - wb[:, :, None]) + wb[:, :, None] * rho)
                 ) @ (weights / weights.sum())
        tv[rows] = 0.5 * np.abs(p_bc - p_b * ratio).sum(1)
        kl[rows] = rel_entr(p_bc, p_b).sum(1)
    return tv, kl


# ------------------------------------------------------------------ expectations and their errors


def _point(system, t, r, dt, method, tv, tv_err, cmi, cmi_err, slack_err, sharp_err, cmi_exact=None) -> BoundPoint:
    return BoundPoint(system, float(t), int(r), float(dt), method, float(tv), float(tv_err), float(cmi),
                      float(cmi_err), float(cmi - tv**2), float(slack_err), float(cmi - 2 * tv**2),
                      float(sharp_err), cmi_exact)


def _monte_carlo(tv: np.ndarray, kl: np.ndarray) -> tuple[float, ...]:
    """Means and standard errors of TV and I from paired draws, and the s.e. of I - c TV^2 for c = 1, 2 by the
    delta method (the gradient of I - c TV^2 is (1, -2 c TV)): Var = [Var(kl) - 4 c TV Cov(kl, tv)
    + (2 c TV)^2 Var(tv)] / N."""
    n = len(tv)
    cov = np.cov(np.stack([tv, kl])) / n
    mean_tv, mean_kl = tv.mean(), kl.mean()
    slack_err = [math.sqrt(max(cov[1, 1] - 2 * (2 * c * mean_tv) * cov[0, 1] + (2 * c * mean_tv) ** 2 * cov[0, 0], 0))
                 for c in (1, 2)]
    return mean_tv, math.sqrt(cov[0, 0]), mean_kl, math.sqrt(cov[1, 1]), *slack_err


# ------------------------------------------------------------------ system 1: the two-component mixture


def gmm2_log_odds(model: TwoComponentMixture, t: float, n_b: int, n_c: int, nodes: int):
    """Log-odds (l_B, l_BC) of s = +1 on an n x n Gauss-Hermite grid over (xi_B, xi_C) given s = +1, and the
    weights: l_B = 2 K_B^2 + 2 K_B xi_B, l_BC = l_B + 2 K_C^2 + 2 K_C xi_C."""
    xi, w = np.polynomial.hermite_e.hermegauss(nodes)
    k_b, k_c = model.K(t, n_b), model.K(t, n_c)
    l_b = 2 * k_b**2 + 2 * k_b * xi
    l_c = 2 * k_c**2 + 2 * k_c * xi
    weights = np.outer(w, w) / w.sum() ** 2
    return np.repeat(l_b, nodes), (l_b[:, None] + l_c[None]).ravel(), weights.ravel()


def gmm2_bound(model: TwoComponentMixture, t: float, radius: int, dts, nodes: int = 64) -> list[BoundPoint]:
    """The bound for a centre pixel of the gmm2 image, ring B_r, for each channel step dt (quadrature; the error
    is the change from n/2 to n nodes per axis)."""
    parts = tripartition((model.L, model.L), radius)
    n_a, n_b, n_c = (parts.sizes()[k] for k in "ABC")
    t = float(check_times(t))
    means, var = (-(1 - t) * model.mu, (1 - t) * model.mu), (1 - t) ** 2 * model.sigma**2 + t**2
    exact = float(model.cmi(t, n_a, n_b, n_c)[0])
    points = []
    for dt in dts:
        channel = path_channel(t, dt)
        values = []
        for n in (nodes, nodes // 2):
            l_b, l_bc, w = gmm2_log_odds(model, t, n_b, n_c, n)
            tv, kl = conditional_tv_kl(l_b, l_bc, means, var, channel)
            values.append(np.array([tv @ w, kl @ w]))
        (tv, cmi), (tv_h, cmi_h) = values
        cmi_err = max(abs(cmi - cmi_h), abs(cmi - exact))
        errs = [abs(c * (tv**2 - tv_h**2)) + cmi_err for c in (1, 2)]
        points.append(_point(model.describe(), t, radius, dt, f"quadrature {nodes}x{nodes}", tv, abs(tv - tv_h),
                             cmi, cmi_err, *errs, cmi_exact=exact))
    return points


# ------------------------------------------------------------------ system 2: an enumerated spin system


class EnumeratedSpins:
    """A distribution over n binary pixels given by the log-weights of all 2^n configurations (pixel i of
    configuration k is bit i of k), with A one pixel, B and C lists of pixels, observed along the path."""

    def __init__(self, log_weights, site: int, buffer, rest, name: str = "enumerated spins"):
        log_weights = np.asarray(log_weights, dtype=np.float64)
        n = round(math.log2(len(log_weights)))
        if len(log_weights) != 2**n or n > 20:
            raise PhasediffError(f"need 2^n log-weights with n <= 20, got {len(log_weights)}")
        self.n, self.name, self.site = n, name, int(site)
        self.buffer, self.rest = np.asarray(buffer, dtype=np.int64), np.asarray(rest, dtype=np.int64)
        self.prob = np.exp(log_weights - logsumexp(log_weights))
        self.bits = (np.arange(2**n)[:, None] >> np.arange(n)[None]) & 1  # (2^n, n)

    def sample(self, count: int, t: float, rng: np.random.Generator) -> np.ndarray:
        """Exact draws x_t = (1 - t) sigma + t z of p_t, sigma from the weights: (count, n)."""
        sigma = self.bits[rng.choice(len(self.prob), size=count, p=self.prob)]
        return add_noise(sigma.astype(np.float64), t, rng.standard_normal(sigma.shape))

    def log_odds(self, x: np.ndarray, t: float, region) -> np.ndarray:
        """log P(sigma_A = 1 | x_R) - log P(sigma_A = 0 | x_R) = log S_1 - log S_0 with
        S_lam = sum_{sigma_R} P(sigma_A = lam, sigma_R) exp(sigma_R . h_R), h_i = (1 - t)(x_i - (1 - t)/2) / t^2 the
        log-likelihood ratio of sigma_i = 1 against 0 (exponents shifted by their maximum, sum_i max(h_i, 0))."""
        region = np.asarray(region, dtype=np.int64)
        key = self.bits[:, region] @ (2 ** np.arange(len(region)))
        marginal = np.stack([np.bincount(key[self.bits[:, self.site] == lam], self.prob[self.bits[:, self.site] == lam],
                                         minlength=2 ** len(region)) for lam in (0, 1)], axis=1)  # (2^|R|, 2)
        patterns = self.bits[: 2 ** len(region), : len(region)].astype(np.float64)  # row j: the bits of j = sigma_R
        h = _site_fields(x[:, region], t)
        out = np.empty(len(x))
        for start in range(0, len(x), CHUNK):
            rows = slice(start, start + CHUNK)
            sums = np.exp(h[rows] @ patterns.T - np.maximum(h[rows], 0).sum(1, keepdims=True)) @ marginal
            out[rows] = np.log(sums[:, 1]) - np.log(sums[:, 0])
        return out

    def buffer_log_odds(self, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(l_B, l_BC): the log-odds of sigma_A = 1 given x_B and given (x_B, x_C); x_A is not used."""
        return self.log_odds(x, t, self.buffer), self.log_odds(x, t, np.concatenate([self.buffer, self.rest]))

    def exact_tv_kl(self, x: np.ndarray, t: float, channel: tuple[float, float]):
        """Conditional TV and KL (see ``conditional_tv_kl``) at observed pixels x (N, n)."""
        return conditional_tv_kl(*self.buffer_log_odds(x, t), (0.0, 1 - t), t**2, channel)


def _site_fields(x: np.ndarray, t: float) -> np.ndarray:
    """h = log N(x; 1 - t, t^2) - log N(x; 0, t^2) = (1 - t)(x - (1 - t)/2) / t^2; +-CLEAN_FIELD at t = 0."""
    if t == 0:
        return CLEAN_FIELD * (2 * x - 1)
    return (1 - t) * (x - (1 - t) / 2) / t**2


def spins_bound(system: EnumeratedSpins, t: float, dts, draws: int, rng: np.random.Generator,
                radius: int = 1) -> list[BoundPoint]:
    """The bound for each channel step dt by Monte Carlo over exact draws of (x_B, x_C) (shared by every dt)."""
    t = float(check_times(t))
    l_b, l_bc = system.buffer_log_odds(system.sample(draws, t, rng), t)
    points = []
    for dt in dts:
        tv, kl = conditional_tv_kl(l_b, l_bc, (0.0, 1 - t), t**2, path_channel(t, dt))
        points.append(_point(system.name, t, radius, dt, f"monte carlo {draws} draws", *_monte_carlo(tv, kl)))
    return points


def ising_torus(L: int, T: float) -> EnumeratedSpins:
    """The L x L Ising torus (J = 1, spin +1 -> pixel 1) at temperature T, with A = pixel (0, 0), B its 8
    neighbours at periodic Chebyshev distance 1, C the other 7 (2^16 configurations)."""
    if L != 4:
        raise PhasediffError(f"the enumerated Ising torus is 4 x 4 (3 x 3 leaves C empty, 5 x 5 is 2^25), got L={L}")
    spins = 2 * ((np.arange(2 ** (L * L))[:, None] >> np.arange(L * L)[None]) & 1) - 1
    grid = spins.reshape(-1, L, L)
    bonds = (grid * np.roll(grid, -1, axis=1)).sum((1, 2)) + (grid * np.roll(grid, -1, axis=2)).sum((1, 2))
    rows, cols = np.divmod(np.arange(L * L), L)
    ring = np.maximum(np.minimum(rows, L - rows), np.minimum(cols, L - cols))  # periodic distance to (0, 0)
    return EnumeratedSpins(bonds / T, 0, np.flatnonzero(ring == 1), np.flatnonzero(ring > 1),
                           name=f"ising {L}x{L} torus T={T:.4g}")
