"""The two-component Gaussian mixture x_0 = s mu 1 + sigma g, s = +-1 with probability 1/2, g ~ N(0, I).

Its CMI along the path has a closed form (SCIENCE.md section 3): with v = (1-t)^2 sigma^2 + t^2 and
K_R^2 = (1-t)^2 mu^2 |R| / v for a region of |R| pixels,

    F(K) = E_{z ~ N(0,1)} log(1 + exp(-2 K^2 - 2 K z)),
    I_t(A:C|B) = F(K_B) - F(K_AB) - F(K_BC) + F(K_ABC).
"""

from __future__ import annotations

import numpy as np

from phasediff.errors import PhasediffError
from phasediff.paths import check_times

HERMITE_NODES = 200


def expect_standard_normal(fn) -> np.ndarray:
    """E_z fn(z) for z ~ N(0, 1) by Gauss-Hermite (probabilists') quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(HERMITE_NODES)
    return fn(nodes) @ (weights / weights.sum())


def F(K) -> np.ndarray:
    """F(K) = E_z log(1 + exp(-2 K^2 - 2 K z)) = log 2 - I(s : x_R) for K = K_R."""
    K = np.atleast_1d(np.asarray(K, dtype=np.float64))[:, None]
    return expect_standard_normal(lambda z: np.logaddexp(0.0, -2 * K**2 - 2 * K * z[None, :]))


class TwoComponentMixture:
    """x_0 = s mu + sigma g on an L x L grid, with the exact CMI of the noised distribution."""

    def __init__(self, L: int, mu: float = 1.0, sigma: float = 1.0):
        if L < 2:
            raise PhasediffError(f"L must be >= 2, got {L}")
        if not sigma > 0:
            raise PhasediffError(f"sigma must be > 0, got {sigma}")
        self.L, self.mu, self.sigma = int(L), float(mu), float(sigma)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, self.L, self.L)

    def describe(self) -> str:
        return f"two-component mixture, {self.L}x{self.L}, mu={self.mu:g}, sigma={self.sigma:g}"

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels (1 for s = +1, 0 for s = -1)."""
        s = rng.choice(np.array([-1.0, 1.0]), size=n)
        g = rng.standard_normal((n, 1, self.L, self.L))
        return (s[:, None, None, None] * self.mu + self.sigma * g).astype(np.float32), (s > 0).astype(np.int64)

    def K(self, t, size) -> np.ndarray:
        """K_R = (1 - t) mu sqrt(|R| / v), v = (1 - t)^2 sigma^2 + t^2."""
        t = check_times(t)
        v = (1 - t) ** 2 * self.sigma**2 + t**2
        return (1 - t) * abs(self.mu) * np.sqrt(np.asarray(size, dtype=np.float64) / v)

    def cmi(self, t, n_a: int, n_b: int, n_c: int) -> np.ndarray:
        """Exact I_t(A:C|B) in nats for regions of n_a, n_b, n_c pixels (vectorised over t)."""
        t = np.atleast_1d(check_times(t))
        f = lambda size: F(self.K(t, size))  # noqa: E731
        return f(n_b) - f(n_a + n_b) - f(n_b + n_c) + f(n_a + n_b + n_c)
