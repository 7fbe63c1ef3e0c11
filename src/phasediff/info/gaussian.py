"""CMI of Gaussian distributions along the path.

For x_t ~ N(., S_t) with S_t = (1 - t)^2 S_0 + t^2 I,

    I(A:C|B) = 1/2 [logdet S_AB + logdet S_BC - logdet S_B - logdet S_ABC]
             = 1/2 [logdet S_{A|B} - logdet S_{A|BC}],

the second form with the conditional (Schur-complement) covariances S_{A|R} = S_AA - S_AR S_RR^{-1} S_RA.
It is the exact answer for Gaussian fields, and the "gaussian" estimator when S_0 is a dataset's empirical
covariance plus a ridge. That plug-in is biased upward when the conditioning set is large: for Gaussian data
the sample conditional covariance of m pixels given p others is Wishart with n - 1 - p degrees of freedom,
so E logdet S^_{A|R} = logdet S_{A|R} + sum_{i=1..m} psi((n - p - i) / 2) + m log(2 / (n - 1)). The estimator
subtracts that bias from each term.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cholesky
from scipy.special import digamma

from phasediff.errors import PhasediffError
from phasediff.paths import add_noise, noised_covariance
from phasediff.progress import progress

DEFAULT_RIDGE = 1e-4
JACKKNIFE_BLOCKS = 10


def _prefix_logdets(cov: np.ndarray, order: np.ndarray) -> np.ndarray:
    """logdet of the leading k x k block of cov[order][:, order] for every k = 0..len(order), from one Cholesky."""
    chol = cholesky(cov[np.ix_(order, order)], lower=True, check_finite=False)
    return np.concatenate([[0.0], np.cumsum(2.0 * np.log(np.diag(chol)))])


def _nested_cmi(cov: np.ndarray, a: np.ndarray, others: np.ndarray, b_sizes: list[int]) -> np.ndarray:
    """CMI for buffers that are prefixes others[:b] of one ordering of the non-A pixels.

    With two Cholesky factorisations (of [A, others] and of [others]) every term is a prefix log-det:
    I = 1/2 [(logdet S_AB - logdet S_B) - (logdet S_ABC - logdet S_BC)].
    """
    with_a = _prefix_logdets(cov, np.concatenate([a, others]))
    without_a = _prefix_logdets(cov, others)
    m = len(a)
    given_all = with_a[-1] - without_a[-1]
    return np.array([0.5 * (with_a[m + b] - without_a[b] - given_all) for b in b_sizes])


def gaussian_cmi(cov: np.ndarray, partitions) -> np.ndarray:
    """I(A:C|B) for each (A, B, C) flat-boolean-mask triple of ``partitions``, all sharing one A.

    Nested buffers (rings of growing radius) share two factorisations; other buffers take two each.
    """
    A = partitions[0][0]
    a = np.flatnonzero(A)
    buffers = [B for _, B, _ in partitions]
    sizes = [int(B.sum()) for B in buffers]
    by_size = np.argsort(sizes, kind="stable")
    rank = np.full(len(A), len(buffers))  # position in the size order of the first buffer holding each pixel
    for position, j in enumerate(by_size[::-1]):
        rank[buffers[j]] = len(buffers) - 1 - position
    others = np.flatnonzero(~A)
    others = others[np.argsort(rank[others], kind="stable")]
    if all(np.array_equal(np.sort(others[: sizes[j]]), np.flatnonzero(buffers[j])) for j in range(len(buffers))):
        return _nested_cmi(cov, a, others, sizes)
    return np.concatenate([
        _nested_cmi(cov, a, np.concatenate([np.flatnonzero(B), np.flatnonzero(~A & ~B)]), [int(B.sum())])
        for B in buffers
    ])


def gaussian_cmi_grid(cov0: np.ndarray, ts, partitions) -> np.ndarray:
    """Exact CMI (len(ts), len(partitions)) of x_t for x_0 ~ N(., cov0)."""
    return np.stack([gaussian_cmi(noised_covariance(cov0, t), partitions) for t in ts])


def wishart_logdet_bias(n: int, p: int, m: int) -> float:
    """E logdet S^_{A|R} - logdet S_{A|R} for m target and p given pixels from n Gaussian samples."""
    i = np.arange(1, m + 1)
    return float(digamma((n - p - i) / 2.0).sum() + m * np.log(2.0 / (n - 1)))


def debiased_gaussian_cmi(cov: np.ndarray, n: int, partitions, varying: np.ndarray | None = None) -> np.ndarray:
    """Plug-in CMI of an n-sample covariance minus the Wishart bias of its two conditional log-dets.

    Pixels outside ``varying`` (constant in the sample: the ridge alone is their variance) are independent of
    the rest, so their log-dets cancel in the plug-in; they are left out of the bias's pixel counts, and a
    constant A has CMI 0 exactly."""
    varying = np.ones(len(partitions[0][0]), bool) if varying is None else varying
    A = partitions[0][0]
    m = int((A & varying).sum())
    if m == 0:
        return np.zeros(len(partitions))
    rest = int((~A & varying).sum())
    bias = np.array([0.5 * (wishart_logdet_bias(n, int((B & varying).sum()), m) - wishart_logdet_bias(n, rest, m))
                     for _, B, _ in partitions])
    return gaussian_cmi(cov, partitions) - bias


def empirical_gaussian_cmi(images: np.ndarray, ts, partitions, ridge: float = DEFAULT_RIDGE,
                           blocks: int = JACKKNIFE_BLOCKS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The "gaussian" estimator: the CMI of a Gaussian with the covariance of the noised data, plus ridge I.

    For each t the images are noised with fresh z (seeded), so the sample covariance of x_t is Wishart for
    Gaussian data and the bias correction of the module docstring is exact there. The ridge keeps pixels that
    never vary (MNIST's corners) from making the covariance singular at t = 0; they do not count in the bias. The standard error comes from
    the delete-one-block jackknife over ``blocks`` contiguous blocks of images.
    """
    x0 = images.reshape(len(images), -1).astype(np.float64)
    n, d = x0.shape
    if n - d < 3:
        raise PhasediffError(f"the gaussian estimator needs more images than pixels ({n} images, {d} pixels)")
    blocks = max(2, min(blocks, n // 2))
    edges = np.linspace(0, n, blocks + 1).astype(int)
    counts = np.diff(edges)
    rng = np.random.default_rng(seed)
    full = np.empty((len(ts), len(partitions)))
    leave_out = np.empty((blocks, len(ts), len(partitions)))
    for k, t in enumerate(progress(ts, desc="gaussian CMI", unit="t")):
        xt = add_noise(x0, t, rng.standard_normal(x0.shape)) if t > 0 else x0
        varying = xt.min(0) < xt.max(0)
        sums = np.stack([xt[a:b].sum(0) for a, b in zip(edges[:-1], edges[1:])])
        grams = np.stack([xt[a:b].T @ xt[a:b] for a, b in zip(edges[:-1], edges[1:])])

        def estimate(keep: np.ndarray) -> np.ndarray:
            m = int(counts[keep].sum())
            mean = sums[keep].sum(0) / m
            cov = (grams[keep].sum(0) - m * np.outer(mean, mean)) / (m - 1)
            return debiased_gaussian_cmi(cov + ridge * np.eye(d), m, partitions, varying)

        full[k] = estimate(np.ones(blocks, bool))
        for i in range(blocks):
            leave_out[i, k] = estimate(np.arange(blocks) != i)
    stderr = np.sqrt((blocks - 1) / blocks * ((leave_out - leave_out.mean(0)) ** 2).sum(0))
    return full, stderr
