import numpy as np
import pytest
import torch

from phasediff import paths
from phasediff.errors import PhasediffError


def test_add_noise_is_the_interpolation_path():
    x0, z = np.ones(3), np.full(3, 2.0)
    assert np.allclose(paths.add_noise(x0, 0.25, z), 0.75 * x0 + 0.25 * z)
    assert paths.signal_scale(0.3) == pytest.approx(0.7) and paths.noise_scale(0.3) == 0.3


def test_add_noise_broadcasts_a_time_per_image():
    x0, z = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    t = torch.tensor([0.0, 1.0]).reshape(-1, 1, 1, 1)
    assert torch.equal(paths.add_noise(x0, t, z), torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)]))


def test_noised_variance_and_covariance():
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert np.allclose(paths.noised_covariance(cov, 0.25), 0.5625 * cov + 0.0625 * np.eye(2))
    assert np.allclose(paths.noised_variance(np.diag(cov), 0.25), np.diag(paths.noised_covariance(cov, 0.25)))
    assert paths.noised_variance(4.0, 0.5) == pytest.approx(1.25)


@pytest.mark.parametrize("bad", [-0.1, 1.1, np.nan])
def test_times_outside_unit_interval_are_refused(bad):
    with pytest.raises(PhasediffError):
        paths.check_times([0.5, bad])
