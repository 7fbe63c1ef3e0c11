import numpy as np
import pytest
import torch

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.denoisers.analytic import WienerDenoiser
from phasediff.denoisers.mixture2 import TwoComponentDenoiser
from phasediff.diagnostics.speciation import (
    forward_backward,
    gmm2_kept_ode,
    gmm2_kept_sde,
    gmm2_t_sb,
    gmm2_top_eigenvalue,
    sign_classes,
    spectral_time,
    t_sb,
    top_eigenvalue,
)
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise, noised_covariance
from phasediff.sampling import ancestral, euler, sample, time_grid
from phasediff.stats import seeded_generator, wilson_interval

MEAN = np.array([0.3, -0.2, 0.5, 0.0])
COV = np.array([[1.0, 0.6, 0.3, 0.1], [0.6, 1.0, 0.6, 0.3], [0.3, 0.6, 1.0, 0.6], [0.1, 0.3, 0.6, 1.0]]) * 0.5


@pytest.mark.parametrize("method", ["euler", "ancestral"])
def test_sampler_marginals_follow_the_forward_process_on_gaussian_data(method):
    """With the exact (Wiener) denoiser the sampled x_t has, at every t of the grid, the forward marginal
    N((1 - t) mu, (1 - t)^2 S + t^2 I). Only approximately: the ODE is integrated with finite Euler steps, and an
    ancestral step uses x0_hat = E[x_0 | x_t] where the exact reverse process would draw x_0 ~ p(x_0 | x_t)
    (for Gaussian data the step's mean is right but its variance too small by O(step)). With 200 steps both
    errors sit below the sampling error of 4000 samples; tolerance 5 s.e. over ~3000 correlated checks."""
    n, steps = 4000, 200
    denoiser = WienerDenoiser(MEAN, COV, (1, 2, 2))
    noise = torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    states = {}
    record = lambda step, t, x, x0_hat: states.__setitem__(t, x.flatten(1).numpy().copy())
    extra = {"generator": seeded_generator(0, 1)} if method == "ancestral" else {}
    final = {"euler": euler, "ancestral": ancestral}[method](denoiser, noise, time_grid(steps), callback=record,
                                                             **extra)
    states[0.0] = final.flatten(1).numpy()
    assert len(states) == steps + 1
    for t, x in states.items():
        mean, cov = (1 - t) * MEAN, noised_covariance(COV, t)
        mean_z = (x.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
        cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
        cov_z = (np.cov(x, rowvar=False) - cov) / cov_se
        assert np.abs(mean_z).max() < 5 and np.abs(cov_z).max() < 5, (t, mean_z, cov_z)


def test_ancestral_sampler_is_seeded_and_registered():
    denoiser = WienerDenoiser(MEAN, COV, (1, 2, 2))
    a, b, c = (sample(denoiser, 20, (1, 2, 2), steps=5, method="ancestral", seed=s) for s in (4, 4, 5))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    from phasediff.cli import build_parser

    assert build_parser().parse_args(["sample", "--model", "m", "--out", "x.npz", "--method", "ancestral"]).method \
        == "ancestral"


def test_wilson_interval_known_values():
    low, high = wilson_interval([0, 5, 10], [10, 10, 10])
    assert low == pytest.approx([0.0, 0.236593, 0.722467], abs=1e-5)
    assert high == pytest.approx([0.277533, 0.763407, 1.0], abs=1e-5)
    # the ends are the two roots p of (k / n - p)^2 = z^2 p (1 - p) / n (score test at the 95% level)
    k, n = 81, 263
    ends = np.array(wilson_interval(k, n))
    assert (k / n - ends) ** 2 == pytest.approx(1.959963984540054**2 * ends * (1 - ends) / n, rel=1e-9)
    with pytest.raises(PhasediffError):
        wilson_interval(11, 10)


def test_spectral_time_of_gmm2():
    model = TwoComponentMixture(9, mu=0.7, sigma=1.5)
    cov = model.sigma**2 * np.eye(81) + model.mu**2 * np.ones((81, 81))  # sigma^2 I + mu^2 1 1^T
    assert gmm2_top_eigenvalue(model) == pytest.approx(np.linalg.eigvalsh(cov)[-1]) == pytest.approx(1.5**2 + 0.49 * 81)
    assert spectral_time(cov) == pytest.approx(np.sqrt(41.94) / (1 + np.sqrt(41.94)))
    lam = gmm2_top_eigenvalue(TwoComponentMixture(27, mu=1.0, sigma=1.0))
    assert lam == 730 and spectral_time(np.diag([lam, 1.0])) == pytest.approx(0.9643, abs=1e-4)
    images, _ = TwoComponentMixture(7, mu=0.5, sigma=1.0).sample(5000, np.random.default_rng(0))
    empirical = np.linalg.eigvalsh(np.cov(images.reshape(5000, -1), rowvar=False))[-1]
    assert top_eigenvalue(images) == pytest.approx(empirical)
    assert top_eigenvalue(images[:30]) == pytest.approx(np.linalg.eigvalsh(np.cov(images[:30].reshape(30, -1),
                                                                                   rowvar=False))[-1])
    exact = gmm2_top_eigenvalue(TwoComponentMixture(7, mu=0.5, sigma=1.0))  # 1 + 49 / 4
    assert empirical == pytest.approx(exact, rel=4 * np.sqrt(2 / 5000))


def test_euler_keeps_the_sign_of_the_image_sum_of_gmm2_exactly():
    model = TwoComponentMixture(7, mu=0.3, sigma=1.0)
    x0, _ = model.sample(300, np.random.default_rng(1))
    x_t = add_noise(torch.as_tensor(x0), 0.9, torch.randn(300, 1, 7, 7, generator=torch.Generator().manual_seed(2)))
    out = euler(TwoComponentDenoiser.of(model), x_t, time_grid(3, 0.9, 0.0))
    assert np.array_equal(sign_classes(out), sign_classes(x_t))


def test_forward_backward_matches_both_closed_forms_on_gmm2():
    model = TwoComponentMixture(7, mu=1.0, sigma=1.0)
    images, labels = model.sample(400, np.random.default_rng(0))
    ts = [0.8, 0.88, 0.93]
    for method, exact in (("euler", gmm2_kept_ode), ("ancestral", gmm2_kept_sde)):
        kept = forward_backward(TwoComponentDenoiser.of(model), images, labels, sign_classes, ts, method,
                                steps_per_unit=64).mean(1)
        p = exact(model, ts)
        assert np.all(np.abs(kept - p) < 3 * np.sqrt(p * (1 - p) / 400)), (method, kept, p)


def test_closed_forms_and_crossings():
    model = TwoComponentMixture(27, 1.0, 1.0)
    ode, sde = gmm2_kept_ode(model, [0.0, 1.0]), gmm2_kept_sde(model, [0.0, 1.0])
    assert ode == pytest.approx([1, 0.5]) and sde == pytest.approx([1, 0.5])
    crossing = gmm2_t_sb(model, 0.75)
    assert gmm2_kept_ode(model, crossing["ode"]) == pytest.approx(0.75)
    assert gmm2_kept_sde(model, crossing["sde"]) == pytest.approx(0.75)
    assert t_sb([0.1, 0.2, 0.3], [1.0, 0.8, 0.6], 0.75) == pytest.approx(0.225)
    assert t_sb([0.1, 0.2], [1.0, 0.9], 0.75) is None


def test_speciation_command_json_and_bad_input(cli, cli_json):
    result = cli_json("speciation", "gmm2:L=7,mu=1,sigma=1", "--model", "exact", "--t", "0.8,0.9", "--n", "200")
    assert result["t"] == [0.8, 0.9] and result["n"] == 200 and result["classes"] == 2
    assert {"kept", "kept_low", "kept_high", "kept_sde", "kept_sde_low", "kept_sde_high", "kept_stderr", "t_sb",
            "t_sb_interval", "spectral_t", "exact_kept", "exact_kept_sde"} <= set(result)
    assert result["spectral_t"] == pytest.approx(np.sqrt(50) / (1 + np.sqrt(50)))
    assert all(lo <= k <= hi for lo, k, hi in zip(result["kept_low"], result["kept"], result["kept_high"]))
    for argv, words in ((["gmm2:L=7", "--model", "exact", "--t", "0,0.5"], "(0, 1]"),
                        (["grf:L=7,ell=2", "--model", "exact"], "gmm2"),
                        (["gmm2:L=7", "--model", "exact", "--local-radius", "7"], "--local-radius"),
                        (["gmm2:L=7", "--model", "exact", "--n", "0"], "--n")):
        status, out, err = cli("speciation", *argv)
        assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err, err
