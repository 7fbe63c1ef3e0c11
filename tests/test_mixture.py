"""Exact Gaussian-mixture model: densities against scipy, sampling, noising, fitting, and the mixture CMI
against the closed forms of SCIENCE.md section 3."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from phasediff.data.dataset import Dataset
from phasediff.data.mixture import GaussianMixture, fit_mixture
from phasediff.errors import PhasediffError
from phasediff.info.mixture_cmi import mixture_cmi, mixture_cmi_grid


def random_mixture(k=3, shape=(1, 3, 4), q=2, seed=0) -> GaussianMixture:
    rng = np.random.default_rng(seed)
    dim = int(np.prod(shape))
    weights = rng.dirichlet(np.ones(k) * 3)
    return GaussianMixture(weights, rng.normal(size=(k, dim)), 0.8 * rng.normal(size=(k, dim, q)),
                           rng.uniform(0.05, 0.5, size=(k, dim)), shape)


def reference_log_density(model: GaussianMixture, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(x_R; m_kR, Sigma_k[R, R]) with full covariances."""
    terms = [np.log(w) + multivariate_normal(model.means[k][mask], model.component_covariance(k)[np.ix_(mask, mask)]).logpdf(x[:, mask])
             for k, w in enumerate(model.weights)]
    return logsumexp(np.stack(terms), axis=0)


def gaussian_cmi(cov: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """I(A:C|B) = 1/2 [logdet S_AB + logdet S_BC - logdet S_B - logdet S_ABC]."""
    def logdet(mask):
        return np.linalg.slogdet(cov[np.ix_(mask, mask)])[1] if mask.any() else 0.0
    return 0.5 * (logdet(a | b) + logdet(b | c) - logdet(b) - logdet(a | b | c))


def two_component_cmi(t: float, mu: float, sigma: float, sizes: tuple[int, int, int]) -> float:
    """F(K_B) - F(K_AB) - F(K_BC) + F(K_ABC), F(K) = E_z log(1 + exp(-2K^2 - 2Kz)), K_R^2 = (1-t)^2 mu^2 |R| / v."""
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / np.sqrt(2 * np.pi)
    v = (1 - t) ** 2 * sigma**2 + t**2

    def f(size):
        kk = np.sqrt((1 - t) ** 2 * mu**2 * size / v)
        return float(w @ np.logaddexp(0.0, -2 * kk**2 - 2 * kk * z))

    na, nb, nc = sizes
    return f(nb) - f(na + nb) - f(nb + nc) + f(na + nb + nc)


def ring_partition(size: int, radius: int):
    """A = centre pixel, B = Chebyshev distance 1..radius, C = the rest, as (H, W) masks."""
    ii, jj = np.indices((size, size))
    dist = np.maximum(abs(ii - size // 2), abs(jj - size // 2))
    return dist == 0, (dist >= 1) & (dist <= radius), dist > radius


@pytest.mark.parametrize("t", [0.0, 0.4, 0.9])
def test_log_density_matches_full_covariance(t):
    model = random_mixture().noised(t)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 12)) * 1.5
    regions = [np.ones(12, bool), np.eye(12, dtype=bool)[5], rng.random(12) < 0.5, np.arange(12) % 3 == 0]
    for mask in regions:
        np.testing.assert_allclose(model.log_density(x, mask), reference_log_density(model, x, mask), rtol=1e-10, atol=1e-10)
    grid_mask = rng.random((3, 4)) < 0.5
    np.testing.assert_allclose(model.log_density(x.reshape(50, 1, 3, 4), grid_mask),
                               reference_log_density(model, x, grid_mask.ravel()), rtol=1e-10)
    np.testing.assert_array_equal(model.log_density(x, np.zeros(12, bool)), 0.0)


def test_log_conditional_matches_gaussian_conditional():
    model = random_mixture(k=1).noised(0.3)
    cov, mean = model.component_covariance(0), model.means[0]
    x = np.random.default_rng(2).normal(size=(20, 12))
    target, given = np.arange(12) < 3, np.arange(12) >= 7
    gain = cov[np.ix_(target, given)] @ np.linalg.inv(cov[np.ix_(given, given)])
    cond_cov = cov[np.ix_(target, target)] - gain @ cov[np.ix_(given, target)]
    expected = [multivariate_normal(mean[target] + gain @ (row[given] - mean[given]), cond_cov).logpdf(row[target]) for row in x]
    np.testing.assert_allclose(model.log_conditional(x, target, given), expected, rtol=1e-10)
    np.testing.assert_allclose(model.log_conditional(x, target, np.zeros(12, bool)), model.log_density(x, target))
    with pytest.raises(PhasediffError):
        model.log_conditional(x, target, target)


def test_samples_match_the_model():
    model = random_mixture()
    images, labels = model.sample(100_000, np.random.default_rng(3))
    assert images.shape == (100_000, 1, 3, 4) and images.dtype == np.float32
    x = images.reshape(len(images), -1).astype(np.float64)
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / len(labels), model.weights, atol=0.01)
    np.testing.assert_allclose(x.mean(0), model.weights @ model.means, atol=0.03)
    np.testing.assert_allclose(np.cov(x.T), model.covariance(), atol=0.06)
    first = labels == 0
    np.testing.assert_allclose(np.cov(x[first].T), model.component_covariance(0), atol=0.06)


def test_noised_follows_the_formula():
    model, t = random_mixture(), 0.35
    noisy = model.noised(t)
    np.testing.assert_allclose(noisy.means, (1 - t) * model.means)
    np.testing.assert_allclose(noisy.component_covariance(1), (1 - t) ** 2 * model.component_covariance(1) + t**2 * np.eye(12))
    np.testing.assert_allclose(noisy.weights, model.weights)
    pure = model.noised(1.0)
    np.testing.assert_allclose(pure.component_covariance(0), np.eye(12))
    with pytest.raises(PhasediffError):
        model.noised(1.5)


def test_save_and_load_round_trip(tmp_path):
    model = random_mixture()
    model.save(tmp_path / "m.npz")
    loaded = GaussianMixture.load(tmp_path / "m.npz")
    for name in ("weights", "means", "factors", "diag"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.shape == model.shape
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PhasediffError):
        GaussianMixture.load(tmp_path / "bad.npz")


def test_single_gaussian_cmi_matches_logdet_formula():
    model = random_mixture(k=1, shape=(1, 4, 4), q=3, seed=4)
    a, b, c = ring_partition(4, 1)
    t = 0.3
    exact = gaussian_cmi(model.noised(t).component_covariance(0), a.ravel(), b.ravel(), c.ravel())
    value, stderr = mixture_cmi(model, t, a, b, c, 20_000, np.random.default_rng(5))
    assert abs(value - exact) < 3 * stderr
    assert stderr < 0.1 * exact


@pytest.mark.parametrize("t", [0.3, 0.6, 0.8])
def test_two_component_mixture_matches_closed_form(t):
    mu, sigma, size = 1.0, 1.0, 5
    dim = size * size
    model = GaussianMixture([0.5, 0.5], [[mu] * dim, [-mu] * dim], np.zeros((2, dim, 0)),
                            np.full((2, dim), sigma**2), (1, size, size))
    a, b, c = ring_partition(size, 1)
    exact = two_component_cmi(t, mu, sigma, (1, 8, 16))
    value, stderr = mixture_cmi(model, t, a, b, c, 40_000, np.random.default_rng(6))
    assert abs(value - exact) < 3 * stderr, (value, exact, stderr)
    assert stderr < 0.2 * exact + 1e-4


def test_grid_reuses_samples_and_agrees_with_single_calls():
    model = random_mixture(k=2, shape=(1, 5, 5), q=2, seed=7)
    partitions = [ring_partition(5, r) for r in (1, 2)]
    ts = [0.2, 0.7]
    values, stderrs = mixture_cmi_grid(model, ts, partitions, 500, 8)
    assert values.shape == stderrs.shape == (2, 2)
    again, _ = mixture_cmi_grid(model, ts, partitions, 500, 8)
    np.testing.assert_array_equal(values, again)
    # B = everything but A leaves C empty: I = 0 exactly
    np.testing.assert_allclose(values[:, 1], 0.0, atol=1e-12)
    single, single_err = mixture_cmi(model, ts[1], *partitions[0], 500, 8)
    np.testing.assert_allclose([single, single_err], [values[1, 0], stderrs[1, 0]], rtol=1e-12)
    pure, _ = mixture_cmi_grid(model, [1.0], partitions, 100, 0)
    np.testing.assert_allclose(pure, 0.0, atol=1e-9)


def test_cmi_rejects_bad_partitions():
    model = random_mixture(shape=(1, 3, 4))
    a, b, c = np.zeros((3, 4), bool), np.zeros((3, 4), bool), np.ones((3, 4), bool)
    a[0, 0] = True
    rng = np.random.default_rng(0)
    with pytest.raises(PhasediffError):
        mixture_cmi(model, 0.5, a, b, c, 100, rng)  # A and C overlap
    with pytest.raises(PhasediffError):
        mixture_cmi(model, 0.5, np.zeros((3, 4), bool), b, ~a, 100, rng)  # empty A
    with pytest.raises(PhasediffError):
        mixture_cmi(model, 0.5, a, b, ~a, 1, rng)
    with pytest.raises(PhasediffError):
        mixture_cmi(model, -0.1, a, b, ~a, 100, rng)
    with pytest.raises(PhasediffError):
        mixture_cmi(model, 0.5, a.astype(int), b, ~a, 100, rng)
    with pytest.raises(PhasediffError):
        mixture_cmi(model, 0.5, np.ones((4, 4), bool), b, c, 100, rng)


def tiny_dataset() -> Dataset:
    """Three well separated classes of 4 x 4 images; pixel (0, 0) is constant."""
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(3, 16)) * 10
    labels = np.repeat(np.arange(3), [200, 300, 400])
    images = centres[labels] + rng.normal(size=(900, 16)) * rng.uniform(0.5, 1.5, size=16)
    images[:, 0] = 0.5
    return Dataset(images.reshape(900, 1, 4, 4), labels, "tiny")


@pytest.mark.parametrize("by", ["class", "kmeans"])
def test_fit_mixture_keeps_empirical_variances(by):
    data = tiny_dataset()
    model = fit_mixture(data, k=3, rank=2, by=by, seed=0)
    x = data.images.reshape(900, 16).astype(np.float64)
    assert model.factors.shape == (3, 16, 2)
    for k in range(3):
        label = np.argmin([np.abs(model.means[k] - x[data.labels == j].mean(0)).sum() for j in range(3)])
        members = x[data.labels == label]
        diag = np.diag(model.component_covariance(k))
        assert (diag > 0).all()
        np.testing.assert_allclose(diag[1:], members.var(0)[1:], rtol=1e-8)
        assert diag[0] == pytest.approx(1e-4)
        np.testing.assert_allclose(model.weights[k], len(members) / 900)
        np.testing.assert_allclose(model.means[k], members.mean(0), rtol=1e-6)


def test_fit_mixture_rejects_bad_arguments():
    data = tiny_dataset()
    unlabelled = Dataset(data.images, None, "unlabelled")
    for kwargs in ({"k": 0, "rank": 2, "by": "kmeans"}, {"k": 3, "rank": -1, "by": "kmeans"},
                   {"k": 3, "rank": 16, "by": "kmeans"}, {"k": 3, "rank": 2, "by": "pca"},
                   {"k": 4, "rank": 2, "by": "class"}, {"k": 500, "rank": 2, "by": "kmeans"},
                   {"k": 2.5, "rank": 2, "by": "kmeans"}):
        with pytest.raises(PhasediffError):
            fit_mixture(data, seed=0, **kwargs)
    with pytest.raises(PhasediffError):
        fit_mixture(unlabelled, k=3, rank=2, by="class", seed=0)


def test_mixture_rejects_bad_parameters():
    good = random_mixture()
    with pytest.raises(PhasediffError):
        GaussianMixture([0.5, 0.6, -0.1], good.means, good.factors, good.diag, good.shape)
    with pytest.raises(PhasediffError):
        GaussianMixture(good.weights, good.means, good.factors, -good.diag, good.shape)
    with pytest.raises(PhasediffError):
        GaussianMixture(good.weights, good.means, good.factors, good.diag, (1, 4, 4))
    with pytest.raises(PhasediffError):
        good.log_density(np.zeros((3, 11)), np.ones(12, bool))


def test_mixture_exact_entropies_difference_is_the_mixture_cmi_and_one_component_is_gaussian():
    from phasediff.info.exact import exact_entropies

    model = random_mixture(k=3, shape=(1, 3, 4))
    flat = np.arange(12)
    A, B, C = flat == 5, np.isin(flat, [1, 4, 6, 9]), ~np.isin(flat, [1, 4, 5, 6, 9])
    values, stderr = exact_entropies(model, [0.2, 0.6], [(A, B), (A, B | C)], n_samples=3000, seed=4)
    cmi, _ = mixture_cmi_grid(model, [0.2, 0.6], [(A, B, C)], 3000, np.random.default_rng(4))
    assert np.allclose(values[:, 0] - values[:, 1], cmi[:, 0], atol=1e-10)  # same draws: the same numbers
    assert np.all(stderr > 0)
    one = GaussianMixture([1.0], model.means[:1], model.factors[:1], model.diag[:1], model.shape)
    t = 0.4
    cov = (1 - t) ** 2 * one.component_covariance(0) + t**2 * np.eye(12)
    ab, b = np.flatnonzero(A | B), np.flatnonzero(B)
    closed = 0.5 * (np.linalg.slogdet(cov[np.ix_(ab, ab)])[1] - np.linalg.slogdet(cov[np.ix_(b, b)])[1]
                    + np.log(2 * np.pi * np.e))
    value, err = exact_entropies(one, [t], [(A, B)], n_samples=20000, seed=1)
    assert abs(value[0, 0] - closed) < 4 * err[0, 0]
    x0, _ = model.draw(40, np.random.default_rng(2))
    z = np.random.default_rng(3).standard_normal(x0.shape)
    given, _ = exact_entropies(model, [t], [(A, B)], samples=(x0, z))
    direct = model.noised(t).log_densities((1 - t) * x0 + t * z, np.stack([B, A | B]))
    assert given[0, 0] == pytest.approx(float((direct[:, 0] - direct[:, 1]).mean()), abs=1e-12)
