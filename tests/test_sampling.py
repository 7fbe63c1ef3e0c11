import pytest
import torch

from phasediff.errors import PhasediffError
from phasediff.sampling import euler, heun, sample, time_grid

MEAN, STD = 0.3, 0.5


def gaussian_denoiser(x, t, label=None):
    """Exact E[x_0 | x_t] for x_0 ~ N(MEAN, STD^2) per pixel."""
    t = t.view(-1, *([1] * (x.dim() - 1)))
    gain = (1 - t) * STD**2 / ((1 - t) ** 2 * STD**2 + t**2)
    return MEAN + gain * (x - (1 - t) * MEAN)


@pytest.mark.parametrize("method, steps, tol", [("euler", 200, 0.02), ("heun", 20, 0.02)])
def test_exact_denoiser_reproduces_the_gaussian(method, steps, tol):
    x = sample(gaussian_denoiser, 20000, (1, 2, 2), steps=steps, method=method, seed=1, batch_size=7000)
    assert x.shape == (20000, 1, 2, 2)
    assert abs(x.mean().item() - MEAN) < tol and abs(x.std().item() - STD) < tol


def test_heun_is_more_accurate_than_euler_at_equal_steps():
    noise = torch.randn(5000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = time_grid(8)
    err = {f.__name__: abs(f(gaussian_denoiser, noise, times).std().item() - STD) for f in (euler, heun)}
    assert err["heun"] < err["euler"]


def test_sampling_is_seeded_and_batching_does_not_matter():
    a = sample(gaussian_denoiser, 10, (1, 3, 3), steps=4, seed=5, batch_size=3)
    b = sample(gaussian_denoiser, 10, (1, 3, 3), steps=4, seed=5, batch_size=10)
    assert torch.allclose(a, b)


def test_bad_sampler_arguments():
    with pytest.raises(PhasediffError):
        time_grid(0)
    with pytest.raises(PhasediffError):
        sample(gaussian_denoiser, 4, (1, 2, 2), method="rk4")
    with pytest.raises(PhasediffError):
        sample(gaussian_denoiser, 0, (1, 2, 2))
