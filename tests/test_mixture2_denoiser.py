"""The exact two-component mixture denoiser: the Bayes posterior mean, strictly local when given a radius."""

import numpy as np
import torch

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.denoisers.mixture2 import TwoComponentDenoiser
from phasediff.sampling import sample


def _posterior_mean(x, t, mu, sigma):
    """E[x_0 | x_t] by summing over s = +-1 with Gaussian likelihoods (NumPy, one image)."""
    a, v = 1 - t, (1 - t) ** 2 * sigma**2 + t**2
    log_w = np.array([-((x - a * s * mu) ** 2).sum() / (2 * v) for s in (-1.0, 1.0)])
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    return sum(wi * (s * mu + a * sigma**2 / v * (x - a * s * mu)) for wi, s in zip(w, (-1.0, 1.0)))


def test_the_global_denoiser_is_the_bayes_posterior_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 1, 5, 5))
    for t in (0.2, 0.6, 0.95):
        out = TwoComponentDenoiser(0.7, 1.3)(torch.tensor(x), t).numpy()
        for i in range(3):
            np.testing.assert_allclose(out[i, 0], _posterior_mean(x[i, 0], t, 0.7, 1.3), rtol=1e-10, atol=1e-12)


def test_a_local_denoiser_sees_only_its_square_and_a_wide_one_is_global():
    x = torch.randn(1, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    TwoComponentDenoiser(1.0, 1.0, radius=2)(x, 0.5)[0, 0, 4, 4].backward()
    near = torch.zeros(9, 9, dtype=torch.bool)
    near[2:7, 2:7] = True
    assert bool((x.grad[0, 0][~near] == 0).all()) and bool((x.grad[0, 0][near] != 0).all())
    y = torch.randn(2, 1, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(TwoComponentDenoiser(1.0, 1.0, radius=8)(y, 0.4), TwoComponentDenoiser(1.0, 1.0)(y, 0.4))


def test_global_sampling_keeps_both_modes_and_local_sampling_mixes_them():
    model = TwoComponentMixture(16, mu=1.0, sigma=0.5)
    torch.manual_seed(0)
    glob = sample(TwoComponentDenoiser.of(model), 400, model.shape, steps=32, seed=1).double()
    loc = sample(TwoComponentDenoiser.of(model, radius=1), 400, model.shape, steps=32, seed=1).double()
    m_glob, m_loc = glob.mean(dim=(1, 2, 3)).abs(), loc.mean(dim=(1, 2, 3)).abs()
    assert abs(float(m_glob.mean()) - 1.0) < 0.05  # each sample commits to one sign, as the data do
    assert float(m_loc.mean()) < 0.6  # domains of both signs: |m| far below mu
