import numpy as np
import pytest

from phasediff import paths
from phasediff.errors import PhasediffError

T = np.linspace(0.01, 0.99, 25)


def test_add_noise_is_the_interpolation_path():
    x0, z = np.ones(3), np.full(3, 2.0)
    assert np.allclose(paths.add_noise(x0, 0.25, z), 0.75 * x0 + 0.25 * z)
    assert paths.signal_scale(0.3) == pytest.approx(0.7) and paths.noise_scale(0.3) == 0.3


def test_snr_round_trip():
    assert np.allclose(paths.t_from_snr(paths.snr(T)), T)
    assert paths.snr(0.5) == pytest.approx(1.0)
    assert np.isinf(paths.snr(0.0)) and paths.t_from_snr(np.inf) == 0.0


def test_vp_round_trip_and_same_snr():
    abar = paths.vp_from_t(T)
    assert np.allclose(paths.t_from_vp(abar), T)
    assert np.allclose(abar / (1 - abar), paths.snr(T))


def test_vp_sample_maps_onto_the_path():
    rng = np.random.default_rng(0)
    x0, z = rng.standard_normal(5), rng.standard_normal(5)
    abar = 0.37
    x_vp = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * z
    t = paths.t_from_vp(abar)
    assert np.allclose(x_vp * paths.vp_to_path_scale(abar), paths.add_noise(x0, t, z))


def test_edm_round_trip_and_sample_mapping():
    assert np.allclose(paths.t_from_edm_sigma(paths.edm_sigma_from_t(T)), T)
    assert paths.t_from_edm_sigma(np.inf) == 1.0
    rng = np.random.default_rng(1)
    x0, z, sigma = rng.standard_normal(4), rng.standard_normal(4), 2.5
    t = paths.t_from_edm_sigma(sigma)
    assert np.allclose((x0 + sigma * z) / (1 + sigma), paths.add_noise(x0, t, z))


def test_schedules_are_monotone_and_map_into_the_unit_interval():
    ddpm = paths.ddpm_alpha_bar()
    assert ddpm.shape == (1000,) and np.all(np.diff(ddpm) < 0)
    assert ddpm[0] == pytest.approx(1 - 1e-4)
    cosine = paths.cosine_alpha_bar(np.linspace(0, 1, 50))
    assert cosine[0] == pytest.approx(1.0) and cosine[-1] == pytest.approx(0.0, abs=1e-12)
    t = paths.t_from_vp(ddpm)
    assert np.all(np.diff(t) > 0) and 0 < t[0] < t[-1] < 1


def test_noised_covariance():
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert np.allclose(paths.noised_covariance(cov, 0.25), 0.5625 * cov + 0.0625 * np.eye(2))


@pytest.mark.parametrize("bad", [-0.1, 1.1, np.nan])
def test_times_outside_unit_interval_are_refused(bad):
    with pytest.raises(PhasediffError):
        paths.check_times([0.5, bad])
    with pytest.raises(PhasediffError):
        paths.vp_from_t(bad)
