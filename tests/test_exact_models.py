import numpy as np
import pytest

from phasediff.data.fields import ExponentialGRF, NearestNeighbourGMRF
from phasediff.data.gmm2 import F, TwoComponentMixture
from phasediff.info.cmi import flat_partitions
from phasediff.info.gaussian import gaussian_cmi_grid
from phasediff.regions import tripartition


def logdet_cmi(cov, A, B, C):
    """The four-term log-det formula, computed independently with slogdet."""
    def ld(mask):
        idx = np.flatnonzero(mask)
        return np.linalg.slogdet(cov[np.ix_(idx, idx)])[1] if len(idx) else 0.0
    return 0.5 * (ld(A | B) + ld(B | C) - ld(B) - ld(A | B | C))


def partitions(L, rs, site=None, patch=1):
    return flat_partitions((1, L, L), [tripartition((L, L), r, site, patch) for r in rs])


@pytest.mark.parametrize("rs, site, patch", [([1, 2, 4, 8], None, 1), ([6, 1, 3], (5, 20), 2), ([2], (0, 0), 1)])
def test_grf_exact_cmi_equals_independent_logdet(rs, site, patch):
    model = ExponentialGRF(27, 3)
    parts = partitions(27, rs, site, patch)
    ts = [0.0, 0.2, 0.5, 0.9]
    fast = gaussian_cmi_grid(model.covariance, ts, parts)
    for i, t in enumerate(ts):
        cov = (1 - t) ** 2 * model.covariance + t**2 * np.eye(729)
        for j, (A, B, C) in enumerate(parts):
            assert fast[i, j] == pytest.approx(logdet_cmi(cov, A, B, C), abs=1e-6)


def test_grf_covariance_is_exponential_and_samples_match_it():
    model = ExponentialGRF(6, 2.0)
    assert model.covariance[0, 1] == pytest.approx(np.exp(-0.5))
    assert model.covariance[0, 7] == pytest.approx(np.exp(-np.sqrt(2) / 2))
    x, labels = model.sample(20000, np.random.default_rng(0))
    assert labels is None and x.shape == (20000, 1, 6, 6) and x.dtype == np.float32
    assert np.abs(np.cov(x.reshape(20000, -1).T) - model.covariance).max() < 0.05


def test_gmrf_is_markov_at_t0_and_decays_with_noise():
    model = NearestNeighbourGMRF(15, 0.5)
    q = model.precision
    assert q[0, 0] == pytest.approx(4.25) and q[0, 1] == -1 and q[0, 15] == -1 and q[0, 16] == 0
    assert np.allclose(model.covariance @ q, np.eye(225), atol=1e-8)
    parts = partitions(15, [1, 2, 3, 4])
    cmi = gaussian_cmi_grid(model.covariance, [0.0, 0.5], parts)
    assert np.all(np.abs(cmi[0]) < 1e-10)
    assert cmi[1, 0] > 1e-3 and np.all(np.diff(cmi[1]) < 0) and np.all(cmi[1] > 0)
    x, _ = model.sample(20000, np.random.default_rng(1))
    assert np.abs(np.cov(x.reshape(20000, -1).T) - model.covariance).max() < 0.05


def test_gmm2_closed_form_peak_near_0_88():
    model = TwoComponentMixture(20, 1.0, 1.0)
    t = np.linspace(0.5, 1.0, 501)
    cmi = model.cmi(t, 16, 80, 304)
    assert abs(t[np.argmax(cmi)] - 0.88) < 0.01
    assert model.cmi([1.0], 16, 80, 304)[0] == pytest.approx(0.0, abs=1e-12)


def test_gmm2_information_matches_monte_carlo():
    """log 2 - F(K_R) is I(s : x_R); check it by sampling the posterior of s directly."""
    model = TwoComponentMixture(10, 0.7, 1.3)
    rng = np.random.default_rng(2)
    t, size = 0.6, 12
    x, labels = model.sample(200000, rng)
    s = 2.0 * labels - 1
    noisy = (1 - t) * x.reshape(len(x), -1)[:, :size] + t * rng.standard_normal((len(x), size))
    v = (1 - t) ** 2 * 1.3**2 + t**2
    log_odds = 2 * (1 - t) * 0.7 * noisy.sum(1) / v  # log p(s=+1|x) - log p(s=-1|x)
    mc = np.log(2) - np.mean(np.logaddexp(0.0, -s * log_odds))
    assert mc == pytest.approx(np.log(2) - F(model.K(t, size))[0], abs=3e-3)


def test_gmm2_samples():
    x, labels = TwoComponentMixture(5, 2.0, 0.5).sample(4000, np.random.default_rng(3))
    s = 2 * labels - 1
    assert abs(labels.mean() - 0.5) < 0.03
    assert np.allclose((x.reshape(4000, -1) - 2.0 * s[:, None]).std(), 0.5, atol=0.01)


def test_grf_exact_entropies_match_the_gaussian_closed_form_and_give_the_cmi():
    from phasediff.info.exact import exact_entropies

    model = ExponentialGRF(9, 2.0)
    parts = partitions(9, [1, 2, 3])
    ts = [0.0, 0.3, 0.8]
    pairs = [(A, B) for A, B, _ in parts] + [(parts[0][0], parts[0][1] | parts[0][2]),
                                               (parts[0][0], np.zeros_like(parts[0][0]))]
    values, stderr = exact_entropies(model, ts, pairs, n_samples=20000, seed=3)
    for i, t in enumerate(ts):
        cov = (1 - t) ** 2 * model.covariance + t**2 * np.eye(81)
        for j, (A, B) in enumerate(pairs):
            ab, b = np.flatnonzero(A | B), np.flatnonzero(B)
            closed = 0.5 * (np.linalg.slogdet(cov[np.ix_(ab, ab)])[1] + np.log(2 * np.pi * np.e)
                            - (np.linalg.slogdet(cov[np.ix_(b, b)])[1] if len(b) else 0.0))
            assert abs(values[i, j] - closed) < 4 * stderr[i, j] + 1e-9
    # the same draws for every pair: the differences are the CMI up to Monte Carlo error
    cmi = gaussian_cmi_grid(model.covariance, ts, parts)
    assert np.allclose(values[:, :3] - values[:, [3]], cmi, atol=0.01)
    x0 = np.random.default_rng(5).standard_normal((50, 81))
    fixed, _ = exact_entropies(model, ts, pairs, samples=(x0, np.zeros_like(x0)))
    again, _ = exact_entropies(model, ts, pairs, samples=(x0, np.zeros_like(x0)))
    assert np.array_equal(fixed, again)


def test_exact_entropy_quadrature_over_the_noise_of_A_is_exact_for_a_gaussian_pixel():
    from phasediff.errors import PhasediffError
    from phasediff.info.exact import exact_entropies

    model = ExponentialGRF(5, 1.5)
    a = np.arange(25) == 12
    x0 = np.random.default_rng(0).standard_normal((200, 25))
    z = np.random.default_rng(1).standard_normal((200, 25))
    t = 0.4
    value, _ = exact_entropies(model, [t], [(a, np.zeros(25, bool))], samples=(x0, z), target_nodes=12)
    s2 = (1 - t) ** 2 + t**2  # unit marginal variance
    closed = np.mean(0.5 * np.log(2 * np.pi * s2) + ((1 - t) ** 2 * x0[:, 12] ** 2 + t**2) / (2 * s2))
    assert value[0, 0] == pytest.approx(closed, abs=1e-10)
    with pytest.raises(PhasediffError, match="one-pixel"):
        exact_entropies(model, [t], [(a | (np.arange(25) == 13), np.zeros(25, bool))], samples=(x0, z), target_nodes=4)
