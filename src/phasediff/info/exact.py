"""The "exact" estimator: the CMI of a synthetic model computed from its closed form.

Gaussian fields (grf, gmrf): the log-det formula on the exact covariance. The two-component mixture
(gmm2): the Gauss-Hermite closed form. Fitted Gaussian mixtures (gmm): exact log-densities averaged by
Monte Carlo, with a standard error.

``exact_entropies`` gives the conditional entropies H_t(A|B) = -E log p_t(x_A | x_B) themselves, the quantity
each cross-entropy of the neural estimator bounds from above: their difference is that estimator's excess.
"""

from __future__ import annotations

import numpy as np

from phasediff.data.fields import GaussianField
from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.errors import PhasediffError
from phasediff.info.gaussian import gaussian_cmi_grid
from phasediff.paths import add_noise, noised_covariance

DEFAULT_MC_SAMPLES = 4000


def has_exact_cmi(model) -> bool:
    """Whether `exact_cmi` serves ``model`` (Gaussian fields, gmm2, Gaussian mixtures)."""
    from phasediff.data.mixture import GaussianMixture

    return isinstance(model, (GaussianField, TwoComponentMixture, GaussianMixture))


def exact_cmi(model, ts, partitions, n_samples: int = DEFAULT_MC_SAMPLES, seed: int = 0):
    """(values (T, R), stderr (T, R) or None) for flat-mask (A, B, C) triples."""
    if isinstance(model, GaussianField):
        return gaussian_cmi_grid(model.covariance, ts, partitions), None
    if isinstance(model, TwoComponentMixture):
        columns = [model.cmi(ts, int(A.sum()), int(B.sum()), int(C.sum())) for A, B, C in partitions]
        return np.stack(columns, axis=1), None
    from phasediff.data.mixture import GaussianMixture

    if isinstance(model, GaussianMixture):
        from phasediff.info.mixture_cmi import mixture_cmi_grid

        return mixture_cmi_grid(model, ts, partitions, n_samples, np.random.default_rng(seed))
    raise PhasediffError("the exact estimator serves grf, gmrf, gmm2 and gmm models only")


def exact_entropies(model, ts, pairs, n_samples: int = DEFAULT_MC_SAMPLES, seed: int = 0, samples=None,
                    target_nodes: int = 0):
    """(values (T, P), stderr (T, P)) of H_t(A|B) = E[log p_t(x_B) - log p_t(x_AB)] in nats, for flat-mask (A, B)
    pairs (B may be empty): the mean over draws x_t = (1 - t) x_0 + t z of exact log-densities, with its
    standard error. ``samples`` = (x_0, z), flat (n, D), fixes the draws (e.g. an estimator's held-out images
    and noise, so that its cross-entropies minus these entropies are paired); otherwise n_samples are drawn
    (one draw for every t). ``target_nodes`` > 0 (one-pixel A only) integrates the noise of A by Gauss-Hermite
    quadrature, z_A -> sum_j w_j f(z_j), as the neural estimator does, instead of taking its drawn value.
    Gaussian fields (grf, gmrf) and fitted Gaussian mixtures (gmm); differential entropies, in data units.
    """
    from phasediff.data.mixture import GaussianMixture

    if not isinstance(model, (GaussianField, GaussianMixture)):
        raise PhasediffError("exact conditional entropies serve grf, gmrf and gmm models only")
    if target_nodes and any(a.sum() != 1 for a, _ in pairs):
        raise PhasediffError("quadrature over the noise of A needs a one-pixel A")
    if samples is None:
        rng = np.random.default_rng(seed)
        if isinstance(model, GaussianField):
            x0 = model.sample(n_samples, rng)[0].reshape(n_samples, -1).astype(np.float64)
        else:
            x0 = model.draw(n_samples, rng)[0]
        z = rng.standard_normal(x0.shape)
    else:
        x0, z = (np.asarray(v, dtype=np.float64).reshape(len(v), -1) for v in samples)
    nodes, weights = np.polynomial.hermite_e.hermegauss(target_nodes) if target_nodes else (None, None)
    joint = np.stack([a | b for a, b in pairs])
    values, stderr = np.empty((len(ts), len(pairs))), np.empty((len(ts), len(pairs)))
    for i, t in enumerate(ts):
        def log_densities(xt, regions):
            if isinstance(model, GaussianField):
                return _gaussian_log_densities(noised_covariance(model.covariance, t), xt, regions)
            return model.noised(t).log_densities(xt, regions)

        xt = add_noise(x0, t, z)
        given = log_densities(xt, np.stack([b for _, b in pairs]))
        if nodes is None:
            both = log_densities(xt, joint)
        else:
            both = np.zeros_like(given)
            for a in {int(np.flatnonzero(a)[0]) for a, _ in pairs}:
                cols = [k for k, (mask, _) in enumerate(pairs) if mask[a]]
                for node, weight in zip(nodes, weights / weights.sum()):
                    xt[:, a] = add_noise(x0[:, a], t, node)
                    both[:, cols] += weight * log_densities(xt, joint[cols])
                xt[:, a] = add_noise(x0[:, a], t, z[:, a])
        integrand = given - both
        values[i], stderr[i] = integrand.mean(0), integrand.std(0, ddof=1) / np.sqrt(len(xt))
    return values, stderr


def _gaussian_log_densities(cov: np.ndarray, x: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """log N(x_R; 0, cov_RR) for every row R of a boolean (M, D) matrix, (n, M); an empty region gives 0."""
    out = np.zeros((len(x), len(regions)))
    for m, region in enumerate(regions):
        if region.any():
            chol = np.linalg.cholesky(cov[np.ix_(region, region)])
            white = np.linalg.solve(chol, x[:, region].T)
            out[:, m] = -0.5 * (white**2).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * region.sum() * np.log(2 * np.pi)
    return out
