import json

import numpy as np
import pytest
import torch

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.data.mixture import GaussianMixture
from phasediff.denoisers.mixture2 import TwoComponentDenoiser
from phasediff.diagnostics.concurrence import (
    _window_centre,
    concurrence,
    concurrence_table,
    gap_per_image,
    gmm2_class_check,
    gmm2_cmi_peak,
    gmm2_gap,
    peak_times,
    recovery_per_image,
    score_factor,
    square_sizes,
    window_starts,
)
from phasediff.diagnostics.gap import forward_gap
from phasediff.diagnostics.recovery import recovery_diagram
from phasediff.diagnostics.speciation import (
    gmm2_kept_ode,
    gmm2_kept_sde,
    gmm2_t_sb,
    sign_classes,
    speciation,
)
from phasediff.errors import PhasediffError
from phasediff.info.cmi import measure_cmi
from phasediff.info.mixture_cmi import mixture_cmi
from phasediff.paths import add_noise
from phasediff.regions import tripartition

MODEL = TwoComponentMixture(7, mu=1.0, sigma=1.0)
TS = [0.6, 0.75, 0.85, 0.9, 0.93, 0.96]
N = 400


@pytest.fixture(scope="module")
def tiny():
    """One concurrence run on 7 x 7 gmm2 (a few seconds), shared by the tests below."""
    images, labels = MODEL.sample(N, np.random.default_rng(0))
    local = {r: TwoComponentDenoiser.of(MODEL, r) for r in (1, 2)}
    result = concurrence(TwoComponentDenoiser.of(MODEL), local, images, labels, sign_classes, TS, model=MODEL,
                         patches=(1, 3), widths=(0.4,), window_step=0.1, valid=gmm2_class_check(MODEL),
                         samples=200, sampler_steps=32, steps_per_unit=64, resamples=200)
    return result, images, labels


def test_forward_backward_curves_match_their_closed_forms(tiny):
    result, _, _ = tiny
    sp = result.speciation
    for measured, exact in ((sp.kept, gmm2_kept_ode(MODEL, TS)), (sp.kept_sde, gmm2_kept_sde(MODEL, TS))):
        se = np.sqrt(exact * (1 - exact) / N)
        assert np.all(np.abs(measured - exact) <= 3 * se + 1e-12), (measured, exact)
    crossing = gmm2_t_sb(MODEL, 0.75)
    ode, sde = result.measure("forward-backward ODE"), result.measure("forward-backward SDE")
    assert ode.exact == crossing["ode"] and sde.exact == crossing["sde"]
    assert ode.low <= crossing["ode"] <= ode.high and sde.low <= crossing["sde"] <= sde.high


def test_t_sb_intervals_are_those_of_speciation(tiny):
    """Same images, noise and bootstrap weights as `speciation`: the same t_SB and intervals."""
    result, images, labels = tiny
    alone = speciation(TwoComponentDenoiser.of(MODEL), images, labels, sign_classes, TS, model=MODEL,
                       steps_per_unit=64, resamples=200)
    assert alone.t_sb == result.speciation.t_sb and alone.t_sb_sde == result.speciation.t_sb_sde
    assert tuple(alone.t_sb_interval) == tuple(result.speciation.t_sb_interval)
    assert tuple(alone.t_sb_sde_interval) == tuple(result.speciation.t_sb_sde_interval)
    np.testing.assert_array_equal(alone.kept_sde, result.speciation.kept_sde)


def test_locality_gap_matches_its_closed_form(tiny):
    result, _, _ = tiny
    for r in result.radii:
        entry = result.gap[str(r)]
        exact, measured, se = gmm2_gap(MODEL, r, TS), np.asarray(entry["x0"]), np.asarray(entry["x0_stderr"])
        assert np.all(np.abs(measured - exact) <= 3 * se), (r, measured, exact, se)
        assert entry["exact_x0"] == pytest.approx(exact.tolist())


def test_gap_and_recovery_per_image_reproduce_the_modules():
    images = torch.as_tensor(MODEL.sample(30, np.random.default_rng(5))[0])
    g, local = TwoComponentDenoiser.of(MODEL), {1: TwoComponentDenoiser.of(MODEL, 1)}
    per = gap_per_image(g, local, images, [0.5, 0.9], seed=3, batch_size=7)
    ref = forward_gap(local, g, images, times=[0.5, 0.9], seed=3)
    assert per.mean(2) == pytest.approx(ref.gap, rel=1e-6)
    per = recovery_per_image([g, local[1]], images, [0.5, 0.9], 32.0, seed=3, batch_size=11)
    ref = recovery_diagram({None: g, 1: local[1]}, images, [0.5, 0.9], seed=3)
    assert per.mean(2)[:, [1, 0]] == pytest.approx(ref.mse, rel=1e-6)  # the diagram orders radii before global


def test_score_units_conversion_factor(tiny):
    """score = -(x - (1 - t) x0_hat) / t^2 is the gradient of log p_t (autograd on the exact gmm2 density), so
    score differences are (1 - t) / t^2 times x0_hat differences and squared gaps scale by its square."""
    t = 0.8
    a, v = 1 - t, (1 - t) ** 2 + t**2
    x = add_noise(torch.as_tensor(MODEL.sample(5, np.random.default_rng(1))[0]).double(), t,
                  torch.randn(5, 1, 7, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    x.requires_grad_(True)
    log_p = torch.logsumexp(torch.stack([-((x - s * a) ** 2).sum((1, 2, 3)) / (2 * v) for s in (1.0, -1.0)]), 0)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    tt = torch.full((5,), t, dtype=torch.float64)
    with torch.no_grad():
        x0_global, x0_local = TwoComponentDenoiser.of(MODEL)(x, tt), TwoComponentDenoiser.of(MODEL, 1)(x, tt)
        score = lambda x0: -(x - a * x0) / t**2
        assert torch.allclose(score(x0_global), grad, atol=1e-10)
        assert torch.allclose(score(x0_local) - score(x0_global), score_factor(t) * (x0_local - x0_global), atol=1e-12)
    assert score_factor(0.5) == pytest.approx(2.0) and score_factor(1.0) == 0.0
    with pytest.raises(PhasediffError):
        score_factor(0.0)
    result, _, _ = tiny
    entry = result.gap["1"]
    factor = score_factor(np.asarray(TS)) ** 2
    assert entry["score"] == pytest.approx((np.asarray(entry["x0"]) * factor).tolist())
    assert entry["score_stderr"] == pytest.approx((np.asarray(entry["x0_stderr"]) * factor).tolist())


@pytest.mark.parametrize("patch", [1, 3])
def test_patch_cmi_against_monte_carlo_mixture(patch):
    """The closed form of a k x k patch against the exact-density Monte Carlo of the same model written as a
    two-component Gaussian mixture (`info.mixture_cmi`), which shares no code with it."""
    dim = 49
    mixture = GaussianMixture([0.5, 0.5], np.stack([np.ones(dim), -np.ones(dim)]), np.zeros((2, dim, 1)),
                              np.ones((2, dim)), (1, 7, 7))
    part = tripartition((7, 7), 1, patch=patch)
    for t in (0.7, 0.85):
        closed = measure_cmi(MODEL, [t], [1], "exact", patch=patch).cmi[0, 0]
        value, se = mixture_cmi(mixture, t, part.A, part.B, part.C, 20000, np.random.default_rng(3))
        assert abs(value - closed) < 4 * se, (patch, t, value, se, closed)


def test_cmi_peaks_are_exact_and_move_towards_speciation():
    model = TwoComponentMixture(27, 1.0, 1.0)
    grid = np.linspace(0.5, 0.99, 4901)
    peaks = []
    for k in (1, 3, 5, 7):
        sizes = tripartition((27, 27), 1, patch=k).sizes()
        peak = gmm2_cmi_peak(model, sizes)
        brute = grid[np.argmax(model.cmi(grid, sizes["A"], sizes["B"], sizes["C"]))]
        assert peak == pytest.approx(brute, abs=2e-4)
        peaks.append(peak)
    assert np.all(np.diff(peaks) > 0) and peaks[-1] < gmm2_t_sb(model)["sde"]


def test_tiny_result_holds_every_measure(tiny):
    result, _, _ = tiny
    names = {m.name for m in result.measures}
    assert {"forward-backward ODE", "forward-backward SDE", "spectral t_S (exact Lambda)",
            "spectral t_S (empirical covariance)", "locality gap peak (x0 units), r = 1",
            "locality gap peak (score units), r = 2", "recovery excess peak, r = 1", "CMI peak, A = 3x3, r = 1",
            "sliding window centre, w = 0.4, r = 1"} <= names
    assert "cmi k=3,r=2" in result.skipped  # C would be empty on 7 x 7
    for m in result.measures:
        if m.t is not None and m.low is not None and m.high is not None:
            assert m.low <= m.t + 1e-12 and m.t <= m.high + 1e-12, m
    nl = [m for m in result.measures if m.kind == "nl"]
    assert len(result.differences) == 2 * len(nl)
    d = next(d for d in result.differences if d["measure"] == "CMI peak, A = 1x1, r = 1"
             and d["reference"] == "forward-backward ODE")
    ode = result.measure("forward-backward ODE")
    peak = result.measure("CMI peak, A = 1x1, r = 1").t
    assert d["difference"] == pytest.approx(ode.t - peak)
    assert (d["low"], d["high"]) == pytest.approx((ode.low - peak, ode.high - peak))  # exact: no width of its own
    json.dumps(result.to_dict())
    table = concurrence_table(result)
    assert "t_SB(ODE) - t_NL" in table and "CMI peak, A = 3x3, r = 1" in table


def test_peak_times_and_window_centre():
    t = np.array([0.1, 0.25, 0.3, 0.5, 0.6])
    y = -(t - 0.33) ** 2
    peak, edge = peak_times(t, y)
    assert peak == pytest.approx(0.33) and not edge
    peaks, edges = peak_times(t, np.stack([y, t], axis=1))
    assert peaks == pytest.approx([0.33, 0.6]) and list(edges) == [False, True]
    centres = np.array([0.2, 0.3, 0.4, 0.5])
    assert _window_centre(centres, np.array([0.0, 1.0, 1.0, 0.0])) == pytest.approx(0.35)
    assert np.isnan(_window_centre(centres, np.array([0.1, 0.4, 0.3, 0.2])))  # no window reaches 0.5
    assert np.isnan(_window_centre(centres, np.array([0.6, 0.9, 0.9, 0.8])))  # the local sampler needs none
    assert window_starts(0.4, 0.1) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_class_check_and_square_sizes():
    model = TwoComponentMixture(27, 1.0, 1.0)
    images, _ = model.sample(4000, np.random.default_rng(0))
    passed = gmm2_class_check(model)(torch.as_tensor(images)).mean()
    assert passed > 0.995  # 1 - alpha = 0.999 in expectation
    domains = images.copy()
    domains[:, :, :13] *= -1  # half the image of the other sign: the sign rule still gives it a class
    assert not gmm2_class_check(model)(torch.as_tensor(domains)).any()
    sizes, counts = square_sizes(7, 1)
    assert dict(zip(sizes.tolist(), counts.tolist())) == {4: 4, 6: 20, 9: 25}


def test_concurrence_command_writes_json_and_figure(cli, tmp_path):
    out = tmp_path / "run"
    status, stdout, err = cli("concurrence", "gmm2:L=7,mu=1,sigma=1", "--model", "exact", "--local-radius", "1",
                              "--t", "0.7,0.85,0.9,0.95", "--n", "60", "--samples", "40", "--patches", "1,3",
                              "--window-width", "0.4", "--window-step", "0.2", "--sampler-steps", "16",
                              "--steps-per-unit", "32", "--resamples", "50", "--out", out, "--json", "--quiet")
    assert status == 0, err
    printed = json.loads(stdout)
    stored = json.loads((out / "results.json").read_text())
    assert printed["t"] == stored["t"] == [0.7, 0.85, 0.9, 0.95] and stored["radii"] == [1]
    assert (out / "concurrence.png").stat().st_size > 10_000 and (out / "table.txt").read_text().startswith("symm")
    assert (out / "config.yaml").exists()
    assert "sliding window FD" in stored["skipped"]
    status, _, err = cli("concurrence", "gmm2:L=7", "--model", "exact", "--out", out, "--quiet")
    assert status == 2 and "--force" in err


@pytest.mark.parametrize("argv, words", [
    (["grf:L=7,ell=2", "--model", "exact"], "gmm2"),
    (["gmm2:L=7", "--model", "ckpt.safetensors"], "--model exact"),
    (["gmm2:L=7", "--model", "exact", "--local-radius", "0"], "--local-radius"),
    (["gmm2:L=7", "--model", "exact", "--local-radius", "7"], "--local-radius"),
    (["gmm2:L=7", "--model", "exact", "--t", "0,0.5"], "(0, 1]"),
    (["gmm2:L=7", "--model", "exact", "--window-width", "1.2"], "--window-width"),
    (["gmm2:L=7", "--model", "exact", "--n", "0"], "--n"),
    (["gmm2:L=7", "--model", "exact", "--patches", "0"], "--patches"),
    (["gmm2:L=7", "--model", "exact", "--window-step", "0"], "--window-step"),
    (["gmm2:L=7", "--model", "exact", "--out", "/nonexistent/folder/run"], "does not exist"),
])
def test_concurrence_bad_input(cli, argv, words):
    status, out, err = cli("concurrence", *argv, "--quiet")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err, err
