"""Gaussian random fields with exact covariance: the exponential-covariance GRF and the
nearest-neighbour Gaussian Markov random field (GMRF). Both are zero-mean on an L x L grid."""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, solve_triangular

from phasediff.errors import PhasediffError

MAX_PIXELS = 128 * 128


def _grid_coordinates(L: int) -> np.ndarray:
    ys, xs = np.divmod(np.arange(L * L), L)
    return np.stack([ys, xs], axis=1).astype(np.float64)


class GaussianField:
    """x_0 ~ N(0, S_0) on an L x L grid; ``covariance`` is S_0 over the row-major flattened pixels."""

    covariance: np.ndarray
    L: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, self.L, self.L)

    def _sampling_factor(self) -> np.ndarray:
        """A matrix F with F F^T = S_0 (x = F g, g ~ N(0, I))."""
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
        g = rng.standard_normal((self.L * self.L, n))
        x = self._sampling_factor() @ g
        return x.T.reshape(n, 1, self.L, self.L).astype(np.float32), None


def _check_size(L: int) -> None:
    if L < 2 or L * L > MAX_PIXELS:
        raise PhasediffError(f"L must be between 2 and {int(MAX_PIXELS ** 0.5)} for an exact field, got {L}")


class ExponentialGRF(GaussianField):
    """Unit-variance GRF with covariance exp(-d / ell), d the Euclidean distance between pixels."""

    def __init__(self, L: int, ell: float):
        _check_size(L)
        if not ell > 0:
            raise PhasediffError(f"ell must be > 0, got {ell}")
        self.L, self.ell = int(L), float(ell)
        xy = _grid_coordinates(self.L)
        d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
        self.covariance = np.exp(-d / self.ell)

    def describe(self) -> str:
        return f"Gaussian random field, {self.L}x{self.L}, covariance exp(-d/{self.ell:g})"

    def _sampling_factor(self) -> np.ndarray:
        # exp(-d/ell) is positive definite in 2D; a tiny jitter guards round-off for long correlation lengths
        jitter = 1e-10 * np.eye(len(self.covariance))
        return np.linalg.cholesky(self.covariance + jitter)


class NearestNeighbourGMRF(GaussianField):
    """GMRF with precision Q = (4 + kappa^2) on the diagonal, -1 between 4-neighbours, free boundary."""

    def __init__(self, L: int, kappa: float):
        _check_size(L)
        if not kappa > 0:
            raise PhasediffError(f"kappa must be > 0, got {kappa}")
        self.L, self.kappa = int(L), float(kappa)
        self.precision = self._precision()
        self.covariance = np.linalg.inv(self.precision)
        self.covariance = 0.5 * (self.covariance + self.covariance.T)

    def _precision(self) -> np.ndarray:
        n = self.L * self.L
        q = (4.0 + self.kappa**2) * np.eye(n)
        idx = np.arange(n).reshape(self.L, self.L)
        for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
            q[a.ravel(), b.ravel()] = q[b.ravel(), a.ravel()] = -1.0
        return q

    def describe(self) -> str:
        return f"nearest-neighbour GMRF, {self.L}x{self.L}, kappa={self.kappa:g}"

    def _sampling_factor(self) -> np.ndarray:
        # Q = R^T R (upper Cholesky); x = R^{-1} g has covariance Q^{-1}
        upper, _ = cho_factor(self.precision, lower=False)
        return solve_triangular(np.triu(upper), np.eye(len(upper)))
