import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate

from phasediff.denoisers.analytic import (
    T_MIN,
    EmpiricalDenoiser,
    LocalWienerDenoiser,
    PatchPosteriorDenoiser,
    WienerDenoiser,
)
from phasediff.errors import PhasediffError


def noised(x0, t, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.as_tensor(t, dtype=x0.dtype).reshape(-1, 1, 1, 1)
    return (1 - t) * x0 + t * torch.randn(x0.shape, generator=g, dtype=x0.dtype)


def images(n, shape, seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def empirical_reference(train, x, t):
    """Plain float64 softmax over all training images."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    d2 = (x.flatten(1)[:, None] - (1 - t)[:, :, None] * train.flatten(1)[None]).square().sum(-1)
    return (torch.softmax(-d2 / (2 * t**2), 1) @ train.flatten(1)).reshape(x.shape)


def patch_reference(train, x, t, r, locations):
    """Per-pixel loop: softmax over zero-padded candidate patches, mean of their centre pixels."""
    _, _, height, width = x.shape
    side = 2 * r + 1
    train_p, x_p = F.pad(train, (r,) * 4), F.pad(x, (r,) * 4)
    every = torch.cat([train_p[:, :, i:i + side, j:j + side] for i in range(height) for j in range(width)])
    out = torch.empty_like(x)
    for b in range(len(x)):
        for i in range(height):
            for j in range(width):
                cands = train_p[:, :, i:i + side, j:j + side] if locations == "same" else every
                d2 = (x_p[b, :, i:i + side, j:j + side] - (1 - t[b]) * cands).square().sum((1, 2, 3))
                w = torch.softmax(-d2 / (2 * t[b] ** 2), 0)
                out[b, :, i, j] = (w[:, None] * cands[:, :, r, r]).sum(0)
    return out


# ---- empirical posterior mean -------------------------------------------------------------------------

def test_empirical_equals_brute_force_for_every_batch_and_chunk_size():
    train, clean = images(50, (1, 6, 6)), images(7, (1, 6, 6), seed=5)
    t = torch.tensor([0.9, 0.5, 0.3, 0.1, 0.03, 0.01, 0.002], dtype=torch.float64)
    x = noised(clean, t)
    ref = empirical_reference(train, x, t)
    for chunk in (1, 4, 50, None):
        den = EmpiricalDenoiser(train, chunk=chunk)
        for batch in (1, 3, 7):
            out = torch.cat([den(x[s:s + batch], t[s:s + batch]) for s in range(0, 7, batch)])
            torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


def test_empirical_is_stable_where_a_naive_exp_underflows():
    train = images(50, (1, 6, 6))
    x = noised(train[:4] + 0.05, 0.004)
    d2 = (x.flatten(1)[:, None] - (1 - 0.004) * train.flatten(1)[None]).square().sum(-1)
    assert torch.exp(-d2 / (2 * 0.004**2)).sum(1).eq(0).all()  # a naive softmax gives 0 / 0
    out = EmpiricalDenoiser(train, chunk=3)(x, 0.004)
    torch.testing.assert_close(out, empirical_reference(train, x, torch.full((4,), 0.004)), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out, train[:4], rtol=0, atol=1e-12)  # the nearest training image


def test_empirical_at_t_zero_returns_the_nearest_training_image():
    train = images(20, (2, 3, 3))
    x = images(5, (2, 3, 3), seed=9)
    nearest = train[(x.flatten(1)[:, None] - train.flatten(1)[None]).square().sum(-1).argmin(1)]
    torch.testing.assert_close(EmpiricalDenoiser(train)(x, 0.0), nearest, rtol=0, atol=1e-12)


def test_empirical_keeps_the_input_dtype():
    train = images(10, (1, 4, 4))
    out = EmpiricalDenoiser(train)(train[:2].float(), 0.5)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 4, 4)


# ---- local patch posteriors ---------------------------------------------------------------------------

@pytest.mark.parametrize("locations", ["same", "all"])
@pytest.mark.parametrize("radius", [0, 1, 2])
def test_patch_posterior_equals_per_pixel_loop(locations, radius):
    train, clean = images(6, (2, 4, 5)), images(3, (2, 4, 5), seed=3)
    t = torch.tensor([0.6, 0.2, 0.05], dtype=torch.float64)
    x = noised(clean, t)
    ref = patch_reference(train, x, t, radius, locations)
    for chunk in (1, 4, None):
        den = PatchPosteriorDenoiser(train, radius, locations, chunk=chunk)
        assert den.radius == radius
        torch.testing.assert_close(den(x, t), ref, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(torch.cat([den(x[i:i + 1], t[i]) for i in range(3)]), ref, rtol=1e-9, atol=1e-9)


def test_patch_posterior_of_whole_image_radius_equals_empirical():
    # With r >= max(H, W) - 1, every zero-padded patch holds the whole image (plus zeros that add nothing
    # to the distance), so for locations="same" every pixel has the weights of the empirical posterior.
    train, clean = images(30, (1, 5, 7)), images(4, (1, 5, 7), seed=2)
    t = torch.tensor([0.7, 0.3, 0.1, 0.01], dtype=torch.float64)
    x = noised(clean, t)
    empirical = EmpiricalDenoiser(train)(x, t)
    torch.testing.assert_close(PatchPosteriorDenoiser(train, 6, chunk=7)(x, t), empirical, rtol=1e-9, atol=1e-9)
    assert (PatchPosteriorDenoiser(train, 5)(x, t) - empirical).abs().max() > 1e-3  # r = 5 misses columns


# ---- Wiener ---------------------------------------------------------------------------------------------

def gaussian(dim, seed=0):
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return rng.uniform(0, 1, dim), root @ root.T + 0.01 * np.eye(dim)


def test_wiener_equals_the_formula():
    mean, cov = gaussian(12)
    x = np.random.default_rng(1).normal(size=(3, 12))
    t = np.array([0.8, 0.4, 0.05])
    out = WienerDenoiser(mean, cov)(torch.tensor(x).reshape(3, 1, 3, 4), torch.tensor(t)).reshape(3, 12).numpy()
    for b in range(3):
        a = 1 - t[b]
        ref = mean + a * cov @ np.linalg.solve(a**2 * cov + t[b] ** 2 * np.eye(12), x[b] - a * mean)
        np.testing.assert_allclose(out[b], ref, rtol=1e-10, atol=1e-10)


def test_wiener_is_the_exact_posterior_mean_of_a_one_dimensional_gaussian():
    mu, var = 0.4, 0.05
    den = WienerDenoiser([mu], [[var]], (1, 1, 1))
    for t, xt in [(0.2, 0.1), (0.5, 0.9), (0.9, -1.0)]:
        def joint(x0, power):
            return x0**power * np.exp(-((x0 - mu) ** 2) / (2 * var) - (xt - (1 - t) * x0) ** 2 / (2 * t**2))
        num = integrate.quad(joint, -5, 5, args=(1,), points=[mu], epsabs=0, epsrel=1e-12)[0]
        den_ = integrate.quad(joint, -5, 5, args=(0,), points=[mu], epsabs=0, epsrel=1e-12)[0]
        out = den(torch.full((1, 1, 1, 1), xt, dtype=torch.float64), t)
        assert out.item() == pytest.approx(num / den_, rel=1e-9)


def test_wiener_fit_uses_the_moments_of_the_training_set():
    train = images(40, (1, 3, 3))
    den = WienerDenoiser.fit(train)
    flat = train.flatten(1).numpy()
    cov = den.eigenvectors @ torch.diag(den.eigenvalues) @ den.eigenvectors.T
    np.testing.assert_allclose(den.mean.numpy(), flat.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(flat.T, bias=True), atol=1e-12)


def local_wiener_reference(mean, cov, x, t, r):
    """Per-pixel loop: solve the linear MMSE problem on the clipped neighbourhood."""
    channels, height, width = x.shape[1:]
    out = np.empty_like(x)
    grid = np.arange(channels * height * width).reshape(channels, height, width)
    for b in range(len(x)):
        a, flat = 1 - t[b], x[b].reshape(-1)
        for i in range(height):
            for j in range(width):
                hood = grid[:, max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].reshape(-1)
                c_nn = a**2 * cov[np.ix_(hood, hood)] + t[b] ** 2 * np.eye(len(hood))
                gain = a * cov[np.ix_(grid[:, i, j], hood)] @ np.linalg.inv(c_nn)
                out[b, :, i, j] = mean[grid[:, i, j]] + gain @ (flat[hood] - a * mean[hood])
    return out


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_local_wiener_equals_per_pixel_solve(radius):
    mean, cov = gaussian(2 * 4 * 5, seed=3)
    x = np.random.default_rng(4).normal(size=(3, 2, 4, 5))
    t = np.array([0.7, 0.3, 0.02])
    den = LocalWienerDenoiser(mean, cov, (2, 4, 5), radius)
    out = den(torch.tensor(x), torch.tensor(t)).numpy()
    np.testing.assert_allclose(out, local_wiener_reference(mean, cov, x, t, radius), rtol=1e-8, atol=1e-8)


def test_local_wiener_with_whole_image_radius_equals_wiener():
    train = images(60, (1, 5, 6))
    x = noised(images(3, (1, 5, 6), seed=7), 0.4)
    t = torch.tensor([0.9, 0.4, 0.1], dtype=torch.float64)
    torch.testing.assert_close(LocalWienerDenoiser.fit(train, 5)(x, t), WienerDenoiser.fit(train)(x, t),
                               rtol=1e-9, atol=1e-9)


# ---- strict locality, per-sample times, t = 0, validation ----------------------------------------------

LOCAL = {
    "patch-same": lambda train, r: PatchPosteriorDenoiser(train, r, "same", chunk=5),
    "patch-all": lambda train, r: PatchPosteriorDenoiser(train, r, "all"),
    "local-wiener": lambda train, r: LocalWienerDenoiser.fit(train, r),
}


@pytest.mark.parametrize("name", sorted(LOCAL))
@pytest.mark.parametrize("radius", [1, 2])
def test_strict_locality_by_autograd(name, radius):
    train = images(40, (2, 7, 8))
    den = LOCAL[name](train, radius)
    x = noised(images(2, (2, 7, 8), seed=8), 0.4).requires_grad_(True)
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(8), indexing="ij")
    for i, j in [(0, 0), (3, 4), (6, 2)]:
        grad, = torch.autograd.grad(den(x, 0.4)[1, :, i, j].sum(), x)
        far = torch.maximum((rows - i).abs(), (cols - j).abs()) > radius
        assert grad[0].abs().max() == 0 and grad[1][:, far].abs().max() == 0
        assert grad[1][:, i, j].abs().min() > 0 and grad[1][:, ~far].abs().sum() > 0


@pytest.mark.parametrize("make", [
    lambda train: EmpiricalDenoiser(train, chunk=3),
    lambda train: PatchPosteriorDenoiser(train, 1, "same", chunk=3),
    lambda train: PatchPosteriorDenoiser(train, 1, "all", chunk=3),
    lambda train: LocalWienerDenoiser.fit(train, 1),
])
def test_gradients_through_the_streamed_softmax_are_exact(make):
    den = make(images(10, (1, 3, 4)))
    x = noised(images(2, (1, 3, 4), seed=6), 0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: den(x, torch.tensor([0.3, 0.1], dtype=torch.float64)), (x,))


@pytest.mark.parametrize("make", [
    lambda train: EmpiricalDenoiser(train, chunk=4),
    lambda train: PatchPosteriorDenoiser(train, 1, "same"),
    lambda train: PatchPosteriorDenoiser(train, 1, "all", chunk=2),
    lambda train: WienerDenoiser.fit(train),
    lambda train: LocalWienerDenoiser.fit(train, 1),
])
def test_a_time_per_sample_equals_one_call_per_sample(make):
    train = images(20, (1, 4, 4))
    den = make(train)
    t = torch.tensor([0.9, 0.4, 0.4, 0.05, 0.0], dtype=torch.float64)
    x = noised(images(5, (1, 4, 4), seed=4), t)
    joint = den(x, t)
    single = torch.cat([den(x[i:i + 1], float(t[i])) for i in range(5)])
    assert torch.isfinite(joint).all()
    torch.testing.assert_close(joint, single, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(den(x, 0.0), den(x, T_MIN), rtol=0, atol=0)


def test_invalid_inputs_raise_phasediff_error():
    train = images(5, (1, 4, 4))
    x = train[:2]
    dens = [EmpiricalDenoiser(train), PatchPosteriorDenoiser(train, 1), WienerDenoiser.fit(train),
            LocalWienerDenoiser.fit(train, 1)]
    bad_calls = [(x, 1.5), (x, -0.1), (x, float("nan")), (x, torch.tensor([0.5, 0.5, 0.5])),
                 (x[:, :, :3], 0.5), (x.clone().fill_(float("inf")), 0.5), (x.numpy(), 0.5)]
    for den in dens:
        for args in bad_calls:
            with pytest.raises(PhasediffError):
                den(*args)
    bad_builds = [
        lambda: EmpiricalDenoiser(train[0]),
        lambda: EmpiricalDenoiser(train.clone().fill_(float("nan"))),
        lambda: EmpiricalDenoiser(train, chunk=0),
        lambda: PatchPosteriorDenoiser(train, 4),
        lambda: PatchPosteriorDenoiser(train, -1),
        lambda: PatchPosteriorDenoiser(train, 1, locations="anywhere"),
        lambda: WienerDenoiser(np.zeros(3), np.eye(4)),
        lambda: WienerDenoiser(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]])),
        lambda: WienerDenoiser(np.zeros(4), np.eye(4), (1, 3, 3)),
        lambda: WienerDenoiser(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]])),
        lambda: LocalWienerDenoiser(np.zeros(16), np.eye(16), (1, 4, 4), 4),
    ]
    for build in bad_builds:
        with pytest.raises(PhasediffError):
            build()
