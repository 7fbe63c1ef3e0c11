import numpy as np
import pytest
import torch

from phasediff.errors import PhasediffError
from phasediff.stats import Z95, crossings, mean_interval, seeded_noise

T = [0.0, 0.25, 0.5, 0.75, 1.0]


def test_z95_is_the_two_sided_normal_quantile():
    assert torch.special.ndtr(torch.tensor(Z95, dtype=torch.float64)).item() == pytest.approx(0.975, abs=1e-15)


def test_mean_interval():
    mean, err = mean_interval(np.array([[1.0, 2.0, 3.0, 6.0], [2.0, 2.0, 2.0, 2.0]]))
    assert mean.tolist() == [3.0, 2.0]
    assert err == pytest.approx([np.sqrt(14 / 3) / 2, 0.0])  # std(ddof=1) = sqrt(14 / 3), n = 4
    mean, err = mean_interval(np.array([[1.0, 5.0], [3.0, 7.0]]), axis=0)
    assert mean.tolist() == [2.0, 6.0] and err == pytest.approx([1.0, 1.0])


def test_mean_interval_of_a_single_item_has_zero_error():
    mean, err = mean_interval(np.array([[4.0], [5.0]]))
    assert mean.tolist() == [4.0, 5.0] and err.tolist() == [0.0, 0.0]


def test_seeded_noise_streams():
    a = seeded_noise((3, 4), seed=1, index=0)
    assert a.shape == (3, 4) and torch.equal(a, seeded_noise((3, 4), seed=1, index=0))
    assert not torch.equal(a, seeded_noise((3, 4), seed=1, index=1))
    assert not torch.equal(a, seeded_noise((3, 4), seed=2, index=0))


def test_crossings_interpolate_linearly():
    assert crossings(T, [0.0, 0.2, 0.6, 0.2, 0.0], 0.4) == (0.375, 0.625)
    assert crossings(T, [0.0, 0.1, 0.2, 0.3, 0.4], 0.15) == (0.375, 1.0)
    assert crossings([0.0, 2.0], [1.0, 0.0], 0.25) == (0.0, 1.5)


def test_crossings_never_above_the_level():
    assert crossings(T, [0.0, 0.2, 0.3, 0.2, 0.0], 0.3) is None  # equal to the level is not above it
    assert crossings(T, np.zeros(5), 0.0) is None
    assert crossings([0.5], [0.1], 0.2) is None


def test_crossings_at_the_ends_are_the_grid_ends():
    assert crossings(T, [0.5, 0.5, 0.1, 0.0, 0.0], 0.3) == (0.0, 0.375)
    assert crossings(T, [0.0, 0.0, 0.1, 0.5, 0.9], 0.3) == (0.625, 1.0)
    assert crossings(T, np.ones(5), 0.3) == (0.0, 1.0)
    assert crossings([0.5], [0.4], 0.2) == (0.5, 0.5)


def test_crossings_of_several_stretches_give_their_hull():
    assert crossings(T, [0.0, 0.6, 0.0, 0.6, 0.0], 0.3) == (0.125, 0.875)
    assert crossings(T, [0.8, 0.0, 0.0, 0.0, 0.8], 0.4) == (0.0, 1.0)


def test_crossings_need_one_time_per_value():
    with pytest.raises(PhasediffError):
        crossings(T, [0.0, 1.0], 0.5)
