"""Recovery diagram, locality gap and their figures, checked against answers known in closed form."""

import json

import numpy as np
import pytest
import torch

from phasediff.denoisers import EmpiricalDenoiser, LocalWienerDenoiser, PatchPosteriorDenoiser, WienerDenoiser
from phasediff.diagnostics import LocalityGap, RecoveryDiagram, forward_gap, recovery_diagram, trajectory_gap
from phasediff.errors import PhasediffError
from phasediff.info.result import CMIResult
from phasediff.rundir import to_json

PNG = b"\x89PNG\r\n\x1a\n"


def _images(n=12, shape=(1, 5, 5), seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


class Constant:
    """A radius-0 denoiser that always answers the same image (the data mean)."""

    radius = 0

    def __init__(self, image):
        self.image = image

    def __call__(self, x, t, label=None):
        return self.image.expand_as(x).to(x.dtype)


class Identity:
    """Answers its input: the velocity is 0, so the sampler leaves x_{T_f} as it is."""

    radius = 0

    def __call__(self, x, t, label=None):
        return x


# ---------------------------------------------------------------- recovery


def test_oracle_recovers_exactly():
    images = _images()

    def oracle(x, t, label=None):  # knows x_0 (one batch holds every image)
        assert x.shape == images.shape
        return images

    oracle.radius = None
    diagram = recovery_diagram({None: oracle, 2: Constant(images.mean(0))}, images, t_final=[0.01, 0.5, 0.99])
    assert diagram.radii == [2, None]
    assert diagram.steps == [1, 16, 32]
    np.testing.assert_allclose(diagram.mse[:, 1], 0.0, atol=1e-12)
    assert np.all(diagram.mse[:, 0] > 0.01)
    assert RecoveryDiagram.from_dict(json.loads(to_json(diagram.to_dict()))).radii == [2, None]


def test_mean_denoiser_gives_the_variance():
    """D = mean image: Euler from any x_{T_f} ends exactly at the mean, so the MSE is the per-pixel variance."""
    images = _images(n=20, shape=(2, 4, 3))
    mean = images.mean(0, keepdim=True)
    per_image = (images - mean).square().flatten(1).mean(1).double().numpy()
    for kwargs in ({}, {"steps": 3}):
        diagram = recovery_diagram({0: Constant(mean)}, images, t_final=[0.05, 0.3, 0.9], batch_size=7, **kwargs)
        np.testing.assert_allclose(diagram.mse[:, 0], per_image.mean(), rtol=1e-5)
        np.testing.assert_allclose(diagram.stderr[:, 0], per_image.std(ddof=1) / np.sqrt(20), rtol=1e-4)
        np.testing.assert_allclose(diagram.hi - diagram.mse, 1.959964 * diagram.stderr, rtol=1e-5)
    level = float(per_image.mean())
    below, above = diagram.threshold_contour(level * 0.5)[0], diagram.threshold_contour(level * 2)[0]
    assert below.below_grid and below.t == pytest.approx(0.05)
    assert above.t is None and not above.below_grid


def test_identity_denoiser_measures_the_noise():
    """v = 0 leaves x_{T_f} = (1 - T) x_0 + T z, whose MSE against x_0 is T^2 (mean x_0^2 + 1) on average."""
    images = _images(n=300, shape=(1, 6, 6), seed=1)
    t_final = [0.2, 0.7]
    diagram = recovery_diagram({0: Identity()}, images, t_final=t_final, seed=3)
    for i, t in enumerate(t_final):
        expected = t**2 * (float(images.square().mean()) + 1.0)
        assert abs(diagram.mse[i, 0] - expected) < 4 * diagram.stderr[i, 0]
    again = recovery_diagram({0: Identity()}, images, t_final=t_final, seed=3, batch_size=41)
    np.testing.assert_allclose(again.mse, diagram.mse, rtol=1e-6)
    other = recovery_diagram({0: Identity()}, images, t_final=t_final, seed=4)
    assert not np.allclose(other.mse, diagram.mse)


def test_recovery_does_not_depend_on_batching():
    images = _images(n=15, shape=(1, 6, 6))
    local = {1: LocalWienerDenoiser.fit(images, 1), 2: LocalWienerDenoiser.fit(images, 2)}
    one = recovery_diagram(local, images, t_final=[0.3, 0.8], batch_size=15)
    many = recovery_diagram(local, images, t_final=[0.3, 0.8], batch_size=4)
    np.testing.assert_allclose(one.mse, many.mse, rtol=1e-6)
    assert one.steps == [10, 26]


def test_threshold_contour_interpolates():
    t = [0.1, 0.3, 0.5, 0.7]
    mse = np.array([[0.01, 0.0], [0.02, 0.01], [0.04, 0.02], [0.08, 0.026]])
    err = np.full_like(mse, 0.0025)
    diagram = RecoveryDiagram(t, [1, 3], mse, err, mse - 2 * err, mse + 2 * err, [1] * 4, 10, 0, 0.0)
    first, second = diagram.threshold_contour(0.03)
    assert first.t == pytest.approx(0.4)
    assert first.t_lo == pytest.approx(0.3 + 0.2 * (0.03 - 0.025) / (0.045 - 0.025))
    assert first.t_hi == pytest.approx(0.3 + 0.2 * (0.03 - 0.015) / (0.035 - 0.015))
    assert first.t_lo < first.t < first.t_hi
    assert second.t is None and second.t_hi is None
    assert second.t_lo == pytest.approx(0.5 + 0.2 * (0.03 - 0.025) / (0.031 - 0.025))
    back = RecoveryDiagram.from_dict(json.loads(to_json(diagram.to_dict())))
    np.testing.assert_array_equal(back.hi, diagram.hi)
    assert back.radii == [1, 3] and back.threshold_contour(0.03) == diagram.threshold_contour(0.03)


def test_recovery_refuses_bad_input():
    images = _images()
    with pytest.raises(PhasediffError):
        recovery_diagram({1: Identity()}, images, t_final=[0.0])
    with pytest.raises(PhasediffError):
        recovery_diagram({1: Identity()}, images, t_final=[1.2])
    with pytest.raises(PhasediffError):
        recovery_diagram({}, images)
    with pytest.raises(PhasediffError):
        recovery_diagram({"one": Identity()}, images)
    with pytest.raises(PhasediffError):
        recovery_diagram({1: Identity()}, images[0])
    with pytest.raises(PhasediffError, match="NaN"):
        recovery_diagram({1: lambda x, t, label=None: x * np.nan}, images, t_final=[0.5])


# ---------------------------------------------------------------- locality gap


def test_identical_denoisers_have_zero_gap():
    images = _images(n=10, shape=(1, 6, 6))
    one, two = LocalWienerDenoiser.fit(images, 1), LocalWienerDenoiser.fit(images, 1)
    forward = forward_gap({1: one, 2: two}, one, images, times=[0.0, 0.4, 1.0])
    assert forward.mode == "forward" and forward.times == [0.0, 0.4, 1.0]
    assert np.all(forward.gap == 0) and np.all(forward.stderr == 0)
    path = trajectory_gap({1: one, 2: two}, two, n=5, shape=(1, 6, 6), steps=6)
    assert path.mode == "trajectory" and len(path.times) == 6 and path.times[-1] == 1.0
    assert np.all(path.gap == 0)


def test_patch_posterior_of_the_whole_image_matches_the_empirical_one():
    train = _images(n=25, shape=(1, 5, 5), seed=2)
    test = _images(n=8, shape=(1, 5, 5), seed=3)
    local = {1: PatchPosteriorDenoiser(train, 1), 4: PatchPosteriorDenoiser(train, 4)}
    exact = EmpiricalDenoiser(train)
    for gap in (forward_gap(local, exact, test, times=[0.05, 0.3, 0.6, 0.9]),
                trajectory_gap(local, exact, n=len(test), shape=test.shape[1:], steps=8)):
        assert gap.radii == [1, 4]
        assert np.max(gap.gap[:, 1]) < 1e-12
        assert np.max(gap.gap[:, 0]) > 1e-4  # radius 1 does differ, so the comparison can fail


def _local_wiener_rows(cov, shape, radius, t):
    """The local Wiener map (D, D), built pixel by pixel with numpy."""
    _, height, width = shape
    dim = height * width
    out = np.zeros((dim, dim))
    for p in range(dim):
        y, x = divmod(p, width)
        hood = [q for q in range(dim) if max(abs(q // width - y), abs(q % width - x)) <= radius]
        s_nn = cov[np.ix_(hood, hood)]
        gain = (1 - t) * cov[p, hood] @ np.linalg.inv((1 - t) ** 2 * s_nn + t**2 * np.eye(len(hood)))
        out[p, hood] = gain
    return out


def test_wiener_gap_matches_numpy():
    rng = np.random.default_rng(0)
    shape, dim = (1, 4, 4), 16
    coords = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
    cov = 0.04 * np.exp(-np.abs(coords[:, None] - coords[None]).sum(-1) / 2.0)
    mu = np.linspace(0.2, 0.6, dim)
    train = rng.multivariate_normal(mu, cov, size=400).reshape(-1, *shape)
    test = rng.multivariate_normal(mu, cov, size=600).reshape(-1, *shape)
    times = [0.2, 0.5, 0.8]
    gap = forward_gap({1: LocalWienerDenoiser.fit(train, 1)}, WienerDenoiser.fit(train), test, times=times, seed=5)
    flat = train.reshape(len(train), -1)
    m, s = flat.mean(0), np.cov(flat.T, bias=True)
    centred = test.reshape(len(test), -1) - m
    for i, t in enumerate(times):
        full = (1 - t) * s @ np.linalg.inv((1 - t) ** 2 * s + t**2 * np.eye(dim))
        diff = _local_wiener_rows(s, shape, 1, t) - full
        expected = ((1 - t) ** 2 * np.mean(np.sum((centred @ diff.T) ** 2, 1)) + t**2 * np.sum(diff**2)) / dim
        assert expected > 1e-5
        assert abs(gap.gap[i, 0] - expected) < 4 * gap.stderr[i, 0], (t, gap.gap[i, 0], expected)
        assert abs(gap.gap[i, 0] - expected) < 0.1 * expected


def test_gap_refuses_bad_input():
    images = _images()
    d = LocalWienerDenoiser.fit(images, 1)
    with pytest.raises(PhasediffError):
        forward_gap({None: d}, d, images)
    with pytest.raises(PhasediffError):
        forward_gap({1: d}, d, images, times=[0.5, 1.5])
    with pytest.raises(PhasediffError):
        forward_gap({1: d}, d, None)
    with pytest.raises(PhasediffError):
        trajectory_gap({1: d}, d, n=0, shape=(1, 5, 5))
    with pytest.raises(PhasediffError):
        trajectory_gap({1: d}, d, n=3, shape=(5, 5))


def _table(column, times=(0.0, 0.25, 0.5, 0.75, 1.0), err=0.0):
    gap = np.asarray(column, float)[:, None]
    stderr = np.full_like(gap, err)
    return LocalityGap(list(times), [3], gap, stderr, gap - 2 * stderr, gap + 2 * stderr, "forward", 1, 0, 0.0)


def test_window_interpolates_and_takes_the_hull():
    assert _table([0, 0.2, 0.6, 0.2, 0]).window(3, 0.4) == pytest.approx((0.375, 0.625))
    assert _table([0, 0.6, 0, 0.6, 0]).window(3, 0.3) == pytest.approx((0.125, 0.875))  # hull of two stretches
    assert _table([0, 0.2, 0.3, 0.2, 0]).window(3, 0.3) is None  # equal to the tolerance is not above it
    assert _table([0.5, 0.5, 0.1, 0, 0]).window(3, 0.3) == pytest.approx((0.0, 0.375))
    assert _table([0, 0, 0.1, 0.5, 0.9]).window(3, 0.3) == pytest.approx((0.625, 1.0))
    assert _table([0, 0.2, 0.6, 0.2, 0]).window(3, 0.0) == pytest.approx((0.0, 1.0))
    # times given in descending order mean the same table
    assert _table([0, 0.2, 0.6, 0.2, 0][::-1], times=(1.0, 0.75, 0.5, 0.25, 0.0)).window(3, 0.4) \
        == pytest.approx((0.375, 0.625))
    wide = _table([0, 0.2, 0.6, 0.2, 0], err=0.05)
    assert wide.window(3, 0.25, bound="upper") == pytest.approx((0.1875, 0.8125))
    assert wide.window(3, 0.25, bound="lower") == pytest.approx((0.25 + 0.25 * 0.15 / 0.4, 0.75 - 0.25 * 0.15 / 0.4))
    with pytest.raises(PhasediffError):
        wide.window(2, 0.1)
    with pytest.raises(PhasediffError):
        wide.window(3, -1.0)
    with pytest.raises(PhasediffError):
        wide.window(3, 0.1, bound="median")
    back = LocalityGap.from_dict(json.loads(to_json(wide.to_dict())))
    assert back.window(3, 0.25, bound="upper") == wide.window(3, 0.25, bound="upper")
    with pytest.raises(PhasediffError):
        LocalityGap.from_dict({"times": [0.5]})


# ---------------------------------------------------------------- figures


def test_figures_write_png(tmp_path):
    from phasediff.report.phase_figures import gap_cmi_figure, gap_heatmap, recovery_figure

    t = [0.01, 0.3, 0.6, 0.99]
    mse = np.array([[0.001, 0.0005], [0.02, 0.01], [0.05, 0.04], [0.1, 0.1]])
    err = np.full_like(mse, 0.003)
    diagram = RecoveryDiagram(t, [1, None], mse, err, mse - 2 * err, mse + 2 * err, [1, 10, 20, 32], 8, 0, 0.0)
    gap = LocalityGap([0.1, 0.5, 0.9], [1, 2, 4], np.array([[1e-3, 1e-4, 0], [0.05, 0.02, 0.01], [1e-3, 1e-3, 1e-4]]),
                      np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((3, 3)), "forward", 8, 0, 0.0)
    cmi = CMIResult(t=[0.0, 0.3, 0.6, 1.0], r=[1, 2, 3, 6], cmi=np.abs(np.random.default_rng(0).normal(size=(4, 4))),
                    stderr=None, estimator="exact", dataset="grf", site=(2, 2), patch=1, region_sizes=[],
                    seconds=0.0)
    paths = [recovery_figure(diagram, tmp_path / "recovery.png"),
             gap_heatmap(gap, tmp_path / "gap.png", tolerance=0.01),
             gap_cmi_figure(gap, cmi, tmp_path / "gap_cmi.png", tolerance=0.01),
             gap_cmi_figure(gap, None, tmp_path / "gap_only.png")]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gap.png", "gap_cmi.png", "gap_only.png", "recovery.png"]
