import numpy as np
import pytest

from phasediff.data.fields import ExponentialGRF
from phasediff.data.registry import load_dataset
from phasediff.errors import PhasediffError
from phasediff.info.cmi import flat_partitions, measure_cmi
from phasediff.info.gaussian import empirical_gaussian_cmi, gaussian_cmi_grid, wishart_logdet_bias
from phasediff.regions import tripartition


def test_wishart_bias_matches_simulation():
    rng = np.random.default_rng(0)
    n, p = 40, 10
    logs = []
    for _ in range(4000):
        x = rng.standard_normal((n, p + 1))
        cov = np.cov(x.T)
        given = cov[1:, 1:]
        cond = cov[0, 0] - cov[0, 1:] @ np.linalg.solve(given, cov[1:, 0])
        logs.append(np.log(cond))
    assert np.mean(logs) == pytest.approx(wishart_logdet_bias(n, p, 1), abs=0.01)


def test_gaussian_estimator_is_unbiased_on_a_gaussian_field():
    model = ExponentialGRF(9, 1.5)
    parts = flat_partitions((1, 9, 9), [tripartition((9, 9), r) for r in (1, 2)])
    ts = [0.0, 0.5]
    exact = gaussian_cmi_grid(model.covariance, ts, parts)
    x, _ = model.sample(20000, np.random.default_rng(4))
    estimate, stderr = empirical_gaussian_cmi(x, ts, parts, ridge=0.0, seed=1)
    assert np.all(stderr > 0) and np.all(stderr < 0.003)
    assert np.all(np.abs(estimate - exact) < 4 * stderr + 1e-3)


def test_gaussian_estimator_is_seeded():
    data = load_dataset("grf:L=8,ell=2", n=500)
    a = measure_cmi(data, [0.3], [1], "gaussian", seed=3)
    b = measure_cmi(data, [0.3], [1], "gaussian", seed=3)
    assert np.array_equal(a.cmi, b.cmi) and np.array_equal(a.stderr, b.stderr)


def test_gaussian_estimator_needs_more_images_than_pixels():
    with pytest.raises(PhasediffError, match="more images than pixels"):
        measure_cmi(load_dataset("grf:L=8,ell=2", n=50), [0.3], [1], "gaussian")


def test_exact_estimator_refuses_data_without_a_model():
    with pytest.raises(PhasediffError, match="exact estimator"):
        measure_cmi(load_dataset("digits"), [0.3], [1], "exact")


def test_constant_pixels_carry_no_information():
    """A constant site has CMI 0 exactly; constant pixels elsewhere do not move the estimate (nor its bias)."""
    rng = np.random.default_rng(0)
    shape = (7, 7)
    partitions = flat_partitions((1, *shape), [tripartition(shape, r, site=(3, 3)) for r in (1, 2)])
    constant = np.full((400, 1, *shape), 0.5)
    cmi, err = empirical_gaussian_cmi(constant, [0.0], partitions)
    assert np.all(cmi == 0) and np.all(err == 0)
    varying = rng.random((400, 1, *shape))
    padded = varying.copy()
    padded[:, :, 0, :] = 0.0  # a row that never varies, in C
    np.testing.assert_allclose(empirical_gaussian_cmi(padded, [0.0], partitions)[0],
                               empirical_gaussian_cmi(varying[:, :, 1:, :], [0.0], flat_partitions(
                                   (1, 6, 7), [tripartition((6, 7), r, site=(2, 3)) for r in (1, 2)]))[0], atol=1e-6)
