"""Gaussian mixtures with low-rank-plus-diagonal covariances: an image-like model with exact densities.

Component k is N(m_k, Sigma_k) with Sigma_k = U_k U_k^T + diag(d_k), U_k (D, q), d_k > 0, weight w_k.
Along x_t = (1 - t) x_0 + t z it stays such a mixture: m -> (1 - t) m, U -> (1 - t) U,
d -> (1 - t)^2 d + t^2. The marginal on any pixel set R is exact and costs O(n K |R| q + K q^3)
through the determinant lemma and the Woodbury identity on the rank-q part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import eigh
from scipy.special import logsumexp

from phasediff.data.dataset import Dataset
from phasediff.errors import PhasediffError
from phasediff.rundir import write_atomic

MIN_VARIANCE = 1e-4  # floor of the diagonal d, so that constant pixels (MNIST borders) keep a density
KMEANS_MAX_POINTS = 20_000  # k-means centres are found on at most this many points, then all are assigned
KMEANS_DIMS = 50  # ... in the space of this many principal components (fast; distances are dominated by them)
CHUNK = 2048  # samples per block in log_densities, to bound memory
LOG_2PI = float(np.log(2.0 * np.pi))


def flatten_region(region: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """A boolean region as a flat (D,) mask in (C, H, W) order; an (H, W) mask covers every channel."""
    mask = np.asarray(region)
    if mask.dtype != bool:
        raise PhasediffError(f"a region must be a boolean mask, got dtype {mask.dtype}")
    c, h, w = shape
    if mask.shape == (h, w):
        mask = np.broadcast_to(mask, (c, h, w))
    if mask.shape not in ((c * h * w,), (c, h, w)):
        raise PhasediffError(f"a region mask must have shape ({h}, {w}), ({c}, {h}, {w}) or ({c * h * w},), got {mask.shape}")
    return np.ascontiguousarray(mask.reshape(-1))


def check_time(t: float) -> float:
    """t as a float in [0, 1] (NaN is rejected), or an error."""
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise PhasediffError(f"t must lie in [0, 1], got {t}")
    return t


def check_count(n: Any, name: str, least: int) -> int:
    """n as an int >= least, or an error naming it."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < least:
        raise PhasediffError(f"{name} must be an integer >= {least}, got {n!r}")
    return int(n)


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """weights (K,), means (K, D), factors U (K, D, q), diag d (K, D); image_shape (C, H, W) with D = C H W.

    Sigma_k = U_k U_k^T + diag(d_k). Samples are labelled by their component index.
    """

    weights: np.ndarray
    means: np.ndarray
    factors: np.ndarray
    diag: np.ndarray
    image_shape: tuple[int, int, int]
    origin: str = ""

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise PhasediffError(f"mixture: image_shape must be (C, H, W), got {self.image_shape}")
        weights, means, factors, diag = (np.array(a, dtype=np.float64) for a in
                                         (self.weights, self.means, self.factors, self.diag))
        k, dim = len(weights), int(np.prod(shape))
        if weights.ndim != 1 or k < 1 or means.shape != (k, dim) or diag.shape != (k, dim) \
                or factors.ndim != 3 or factors.shape[:2] != (k, dim):
            raise PhasediffError(
                f"mixture: expected weights (K,), means and diag (K, {dim}), factors (K, {dim}, q); got "
                f"{weights.shape}, {means.shape}, {diag.shape}, {factors.shape}")
        if not all(np.isfinite(a).all() for a in (weights, means, factors, diag)):
            raise PhasediffError("mixture: parameters contain NaN or infinite values")
        if (weights <= 0).any() or abs(weights.sum() - 1.0) > 1e-6:
            raise PhasediffError("mixture: weights must be positive and sum to 1")
        if (diag <= 0).any():
            raise PhasediffError("mixture: the diagonal variances d must be positive")
        for name, value in (("weights", weights / weights.sum()), ("means", means), ("factors", factors),
                            ("diag", diag), ("image_shape", shape)):
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return self.image_shape

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def rank(self) -> int:
        return self.factors.shape[2]

    def describe(self) -> str:
        c, h, w = self.shape
        text = f"Gaussian mixture, {self.n_components} components, rank {self.rank} + diagonal, {c}x{h}x{w}"
        return f"{text}, {self.origin}" if self.origin else text

    def component_covariance(self, k: int) -> np.ndarray:
        """Sigma_k = U_k U_k^T + diag(d_k), (D, D)."""
        return self.factors[k] @ self.factors[k].T + np.diag(self.diag[k])

    def covariance(self) -> np.ndarray:
        """Total covariance sum_k w_k (Sigma_k + m_k m_k^T) - m m^T with m = sum_k w_k m_k, (D, D)."""
        mean = self.weights @ self.means
        second = sum(w * (self.component_covariance(k) + np.outer(m, m))
                     for k, (w, m) in enumerate(zip(self.weights, self.means)))
        return second - np.outer(mean, mean)

    def draw(self, n: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """n flat float64 samples (n, D) and their components: x = m_k + U_k e + sqrt(d_k) g, e, g standard normal."""
        n = check_count(n, "number of samples", 1)
        rng = np.random.default_rng(rng)
        labels = rng.choice(self.n_components, size=n, p=self.weights)
        low = rng.standard_normal((n, self.rank))
        x = self.means[labels] + np.sqrt(self.diag[labels]) * rng.standard_normal((n, self.means.shape[1]))
        for k in range(self.n_components):
            members = labels == k
            x[members] += low[members] @ self.factors[k].T
        return x, labels.astype(np.int64)

    def sample(self, n: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """n images (n, C, H, W) float32 and their component indices (n,) int64."""
        x, labels = self.draw(n, rng)
        return x.reshape(n, *self.shape).astype(np.float32), labels

    def noised(self, t: float) -> GaussianMixture:
        """The law of x_t = (1 - t) x_0 + t z: means (1 - t) m, factors (1 - t) U, diag (1 - t)^2 d + t^2."""
        t = check_time(t)
        origin = f"{self.origin}; noised to t={t:g}" if self.origin else f"noised to t={t:g}"
        return GaussianMixture(self.weights, (1 - t) * self.means, (1 - t) * self.factors,
                               (1 - t) ** 2 * self.diag + t**2, self.shape, origin)

    def log_density(self, x: Any, region: Any) -> np.ndarray:
        """Exact log p(x_R) of the marginal on region R, (n,); only the R entries of x are read."""
        return self.log_densities(x, flatten_region(region, self.shape)[None])[:, 0]

    def log_conditional(self, x: Any, target: Any, given: Any) -> np.ndarray:
        """log p(x_T | x_G) = log p(x_{T u G}) - log p(x_G) for disjoint T and G (G empty: the marginal), (n,)."""
        target, given = flatten_region(target, self.shape), flatten_region(given, self.shape)
        if (target & given).any():
            raise PhasediffError("log_conditional: target and given regions overlap")
        logp = self.log_densities(x, np.stack([target | given, given]))
        return logp[:, 0] - logp[:, 1]

    def log_densities(self, x: Any, regions: np.ndarray) -> np.ndarray:
        """log p(x_R) for every row R of a boolean (M, D) matrix, (n, M):
        log-sum-exp over k of log w_k + log N(x_R; m_kR, Sigma_kR). An empty region gives 0."""
        x = self._flat_batch(x)
        regions = np.asarray(regions)
        if regions.dtype != bool or regions.ndim != 2 or regions.shape[1] != x.shape[1]:
            raise PhasediffError(f"regions must be a boolean (M, {x.shape[1]}) matrix, got {regions.shape}")
        masks = regions.astype(np.float64)
        out = np.empty((len(x), len(masks)))
        for start in range(0, len(x), CHUNK):
            block = x[start : start + CHUNK]
            per_component = [np.log(w) + self._component_log_pdf(k, block, masks) for k, w in enumerate(self.weights)]
            out[start : start + CHUNK] = logsumexp(np.stack(per_component), axis=0)
        return out

    def _component_log_pdf(self, k: int, x: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """log N(x_R; m_R, U_R U_R^T + diag(d_R)) for every mask row R, (n, M), with y = (x - m)/sqrt(d),
        W = U/sqrt(d), M_R = I + W_R^T W_R = L_R L_R^T (determinant lemma, Woodbury):
        -1/2 [|R| log 2 pi + sum_R log d + log det M_R + sum_R y^2 - |L_R^-1 W_R^T y_R|^2]."""
        scale = np.sqrt(self.diag[k])
        y = (x - self.means[k]) / scale
        w = self.factors[k] / scale[:, None]
        n_masks, (dim, q) = len(masks), w.shape
        gram = np.eye(q) + (masks @ (w[:, :, None] * w[:, None, :]).reshape(dim, q * q)).reshape(n_masks, q, q)
        chol = np.linalg.cholesky(gram)
        logdet = masks @ np.log(self.diag[k]) + 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(-1)
        masked_w = (masks[:, :, None] * w[None]).transpose(1, 0, 2).reshape(dim, n_masks * q)
        proj = (y @ masked_w).reshape(len(x), n_masks, q)
        whitened = np.einsum("rpq,nrq->nrp", np.linalg.inv(chol), proj)
        quad = (y * y) @ masks.T - (whitened**2).sum(-1)
        return -0.5 * (masks.sum(1) * LOG_2PI + logdet + quad)

    def _flat_batch(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        dim = self.means.shape[1]
        if x.ndim == 4 and x.shape[1:] == self.shape:
            x = x.reshape(len(x), dim)
        if x.ndim != 2 or x.shape[1] != dim:
            raise PhasediffError(f"x must have shape (n, {dim}) or (n, {', '.join(map(str, self.shape))}), got {x.shape}")
        return x

    def save(self, path: str | Path) -> None:
        """Write the parameters to an .npz file atomically (temporary name, then rename)."""
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, weights=self.weights, means=self.means, factors=self.factors, diag=self.diag,
                         image_shape=np.array(self.shape), origin=np.array(self.origin))

        write_atomic(Path(path), write)

    @classmethod
    def load(cls, path: str | Path) -> GaussianMixture:
        """Read a mixture written by `save` (no pickles)."""
        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(f["weights"], f["means"], f["factors"], f["diag"], tuple(f["image_shape"]), str(f["origin"]))
        except (OSError, KeyError, ValueError) as err:
            raise PhasediffError(f"{path}: not a saved Gaussian mixture ({err})") from err


def fit_mixture(data: Dataset, k: int, rank: int, by: str = "kmeans", seed: int = 0,
                min_var: float = MIN_VARIANCE) -> GaussianMixture:
    """One component per group of images (a class in sorted label order, or a k-means cluster found in the
    space of the top KMEANS_DIMS principal components): w = group fraction, m = group mean,
    U = V sqrt(lambda) from the top-`rank` eigenpairs (lambda, V) of the group covariance (ddof 0), and
    d = max(var - diag(U U^T), min_var) with var the per-pixel variance. Hence diag(Sigma) = var exactly
    wherever the variance left over by the top directions exceeds min_var; elsewhere (e.g. constant pixels)
    diag(Sigma) = diag(U U^T) + min_var > 0. Off-diagonal covariance beyond the top directions is dropped.
    """
    x = data.images.reshape(len(data), -1)
    _check_fit_args(x, k, rank, by, min_var)
    groups = _class_groups(data, k) if by == "class" else _kmeans_groups(x, k, seed)
    counts = np.bincount(groups, minlength=k)
    if counts.min() < 2:
        raise PhasediffError(f"fit_mixture: a group has {counts.min()} image(s); each needs at least 2 (lower k)")
    parts = [_fit_group(x[groups == g], rank, min_var) for g in range(k)]
    means, factors, diag = (np.stack(p) for p in zip(*parts))
    origin = f"fitted to {data.source} by {by} (k={k}, rank={rank}, seed={seed})"
    return GaussianMixture(counts / counts.sum(), means, factors, diag, data.shape, origin)


def _check_fit_args(x: np.ndarray, k: Any, rank: Any, by: str, min_var: float) -> None:
    k = check_count(k, "fit_mixture: k", 1)
    rank = check_count(rank, "fit_mixture: rank", 0)
    if rank >= x.shape[1]:
        raise PhasediffError(f"fit_mixture: rank must be below the number of pixels {x.shape[1]}, got {rank}")
    if by not in ("class", "kmeans"):
        raise PhasediffError(f"fit_mixture: by must be 'class' or 'kmeans', got {by!r}")
    if 2 * k > len(x):
        raise PhasediffError(f"fit_mixture: {len(x)} images are too few for k={k} groups of at least 2")
    if not min_var > 0:
        raise PhasediffError(f"fit_mixture: min_var must be positive, got {min_var}")


def _class_groups(data: Dataset, k: int) -> np.ndarray:
    """Group index of each image: the rank of its label among the sorted distinct labels."""
    if data.labels is None:
        raise PhasediffError(f"fit_mixture: by='class' needs labels, and {data.source} has none")
    classes = np.unique(data.labels)
    if len(classes) != k:
        raise PhasediffError(f"fit_mixture: by='class' gives one component per class: k must be {len(classes)}, got {k}")
    return np.searchsorted(classes, data.labels)


def _kmeans_groups(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means (seeded, 3 restarts) in the space of the top KMEANS_DIMS principal components of at most
    KMEANS_MAX_POINTS images; then every image goes to its nearest centre in that space."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    fit_on = x if len(x) <= KMEANS_MAX_POINTS else x[rng.choice(len(x), KMEANS_MAX_POINTS, replace=False)]
    mean = fit_on.mean(0)
    centred = fit_on - mean
    _, directions = _top_eigen(centred.T @ centred, min(KMEANS_DIMS, x.shape[1]))
    directions = directions.astype(x.dtype)
    kmeans = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(centred @ directions)
    return kmeans.predict((x - mean) @ directions)


def _top_eigen(matrix: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m largest eigenvalues (clipped at 0) and their eigenvectors (D, m) of a symmetric matrix."""
    if m == 0:
        return np.zeros(0), np.zeros((len(matrix), 0))
    lam, vec = eigh(matrix.astype(np.float64), subset_by_index=[len(matrix) - m, len(matrix) - 1], driver="evx")
    return np.clip(lam, 0.0, None), vec


def _fit_group(x: np.ndarray, rank: int, min_var: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, U, d) of one group; see fit_mixture."""
    x = x.astype(np.float64)
    mean = x.mean(0)
    centred = x - mean
    cov = centred.T @ centred / len(x)
    lam, vec = _top_eigen(cov, rank)
    factors = vec * np.sqrt(lam)
    return mean, factors, np.maximum(np.diag(cov) - (factors**2).sum(1), min_var)
