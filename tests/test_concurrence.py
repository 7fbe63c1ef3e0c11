import json

import numpy as np
import pytest
import torch

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.data.mixture import GaussianMixture
from phasediff.denoisers.mixture2 import TwoComponentDenoiser
from phasediff.diagnostics.concurrence import (
    window_centre,
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
    assert window_centre(centres, np.array([0.0, 1.0, 1.0, 0.0])) == pytest.approx(0.35)
    assert np.isnan(window_centre(centres, np.array([0.1, 0.4, 0.3, 0.2])))  # no window reaches 0.5
    assert np.isnan(window_centre(centres, np.array([0.6, 0.9, 0.9, 0.8])))  # the local sampler needs none
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
    (["gmm2:L=7", "--model", "ckpt.safetensors"], "--local-model"),
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


# --- trained checkpoints: tiny networks on digits (8 x 8) and on Ising L = 8 below T_c -------------------------

DIGIT_TS = [0.3, 0.6, 0.8, 0.95]
ISING = "ising:L=8,T=1.5"
ISING_TS = [0.5, 0.8, 0.95]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny untrained checkpoints (their numbers mean nothing; the wiring and the checks are what is tested), a
    `phasediff cmi` result of digits, and checkpoints that must be refused."""
    from phasediff.classifier import Classifier
    from phasediff.data.registry import load_dataset
    from phasediff.denoisers.checkpoint import save
    from phasediff.denoisers.local import LocalDenoiser
    from phasediff.denoisers.unet import UNet
    from phasediff.rundir import save_json

    folder = tmp_path_factory.mktemp("concurrence-ckpts")
    torch.manual_seed(0)
    unet = lambda **kw: UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8, **kw)
    digits = {"data": "digits", "image_shape": [1, 8, 8]}
    ising = {"data": ISING, "image_shape": [1, 8, 8]}
    save(folder / "global", unet(), {**digits, "model_kind": "global"}, weights="ema")
    save(folder / "cond", unet(num_classes=10), {**digits, "model_kind": "global"}, weights="ema")
    save(folder / "local1", LocalDenoiser(1, width=4), {**digits, "model_kind": "local"}, weights="ema")
    save(folder / "local2", LocalDenoiser(2, width=4), {**digits, "model_kind": "local"}, weights="ema")
    save(folder / "judge", Classifier(channels=1, num_classes=10, width=8), {**digits, "model_kind": "classifier"},
         weights="ema")
    save(folder / "ising-global", unet(periodic=True), {**ising, "model_kind": "global"}, weights="ema")
    save(folder / "ising-local1", LocalDenoiser(1, width=4, periodic=True), {**ising, "model_kind": "local"},
         weights="ema")
    # to be refused
    save(folder / "fashion-local", LocalDenoiser(1, width=4), {"data": "fashion-mnist", "image_shape": [1, 28, 28]},
         weights="ema")
    save(folder / "shape16-local", LocalDenoiser(1, width=4), {"data": "digits", "image_shape": [1, 16, 16]},
         weights="ema")
    save(folder / "no-data-local", LocalDenoiser(1, width=4), {"image_shape": [1, 8, 8]}, weights="ema")
    save(folder / "flat-ising-local", LocalDenoiser(1, width=4), ising, weights="ema")  # not periodic
    save(folder / "mnist-judge", Classifier(channels=1, num_classes=10, width=8),
         {"data": "mnist", "image_shape": [1, 28, 28]}, weights="ema")
    run = measure_cmi(load_dataset("digits", split="train"), [0.1, 0.3, 0.5, 0.7, 0.9], [1, 3], "gaussian")
    (folder / "cmirun").mkdir()
    save_json(folder / "cmirun" / "results.json", run.to_dict())
    ising_run = {**run.to_dict(), "dataset": f"{ISING} (2D Ising; train draw, seed 0)"}
    save_json(folder / "ising-cmi.json", ising_run)
    (folder / "not-a-run.json").write_text(json.dumps({"t": [0.1]}))
    return folder


def _digits_argv(ck, *extra):
    return ["concurrence", "digits", "--model", ck / "global", "--local-model", f"1={ck / 'local1'}",
            "--local-model", ck / "local2", "--judge", ck / "judge", "--t", ",".join(map(str, DIGIT_TS)), "--n", "40",
            "--samples", "24", "--window-width", "0.4", "--window-step", "0.2", "--sampler-steps", "8",
            "--steps-per-unit", "16", "--recovery-steps-per-unit", "16", "--resamples", "60", *extra]


@pytest.fixture(scope="module")
def digits_run(ckpts, tmp_path_factory):
    from phasediff.cli import main

    out = tmp_path_factory.mktemp("digits-run") / "run"
    status = main([str(a) for a in _digits_argv(ckpts, "--cmi-run", ckpts / "cmirun", "--conditional-model",
                                                ckpts / "cond", "--conditioning-width", "0.2,0.4", "--out", out,
                                                "--quiet")])
    assert status == 0
    return json.loads((out / "results.json").read_text()), out


def _brackets(data):
    for m in data["measures"]:
        if m["t"] is not None and m["low"] is not None and m["high"] is not None:
            assert m["low"] <= m["t"] + 1e-12 and m["t"] <= m["high"] + 1e-12, m


def test_checkpoint_run_on_digits_holds_every_measure(digits_run, ckpts):
    data, out = digits_run
    assert data["t"] == DIGIT_TS and data["radii"] == [1, 2] and data["speciation"]["classes"] == 10
    names = {m["name"] for m in data["measures"]}
    for r in (1, 2):
        assert {f"locality gap peak (x0 units), r = {r}", f"locality gap peak (score units), r = {r}",
                f"recovery excess peak, r = {r}", f"sliding window centre, w = 0.4, r = {r}",
                f"sliding window centre by FD, w = 0.4, r = {r}"} <= names
    assert {"forward-backward ODE", "forward-backward SDE", "spectral t_S (empirical covariance)",
            "CMI peak, A = 1x1, r = 1"} <= names
    assert "spectral t_S (exact Lambda)" not in names and "CMI peak, A = 1x1, r = 2" not in names
    assert "the CMI run" in data["skipped"]["cmi r=2"]  # the run has radii 1 and 3
    assert "sliding window FD" not in data["skipped"] and "sliding window" not in data["skipped"]
    _brackets(data)
    nl = [m for m in data["measures"] if m["kind"] == "nl"]
    assert len(data["differences"]) == 2 * len(nl)
    cmi = data["cmi"]["k=1,r=1"]
    assert cmi["t"] == [0.1, 0.3, 0.5, 0.7, 0.9] and len(cmi["stderr"]) == 5 and cmi["source"].startswith("gaussian")
    for entry in data["sliding"].values():
        assert len(entry["fd"]) == len(entry["centres"]) == len(entry["accuracy"]) == 4
        assert {"fd", "fd_low", "fd_high", "fd_plug_in"} <= entry["all_global"].keys() <= entry["all_local"].keys()
        assert all(lo <= a <= hi for lo, a, hi in zip(entry["low"], entry["accuracy"], entry["high"]))
    settings = data["settings"]
    assert settings["checkpoints"]["local"] == {"1": str(ckpts / "local1"), "2": str(ckpts / "local2")}
    assert settings["checkpoints"]["judge"] == str(ckpts / "judge") and settings["cmi_run"]["estimator"] == "gaussian"
    assert "0.05 quantile" in settings["sliding_judge"]
    assert (out / "concurrence.png").stat().st_size > 10_000
    assert "by FD" in (out / "table.txt").read_text()
    assert {"conditioning window centre, w = 0.2", "conditioning window centre, w = 0.4"} <= names
    assert list(data["conditioning"]) == ["w=0.2", "w=0.4"] and settings["checkpoints"]["conditional"] == str(ckpts / "cond")
    assert len(data["conditioning"]["w=0.2"]["accuracy"]) == 5 and settings["conditioning"]["guidance"] == 3.0
    assert "conditioning window" not in data["skipped"] and "conditioning window:" in (out / "table.txt").read_text()


def test_checkpoint_curves_equal_speciation_and_the_gap(digits_run, ckpts):
    """The ODE / SDE curves and t_SB intervals of the command are those of `speciation` called directly on the same
    checkpoints, images and judge; its gap is `gap.forward_gap`'s."""
    from phasediff.data.registry import load_dataset
    from phasediff.denoisers.checkpoint import load
    from phasediff.diagnostics.speciation import class_rule

    data, _ = digits_run
    images = load_dataset("digits", split="test", n=40, seed=0)
    classify, classes, labels = class_rule("digits", images, ckpts / "judge")
    global_ = load(ckpts / "global")
    with torch.no_grad():
        alone = speciation(global_, images.images, labels, classify, DIGIT_TS, classes=classes, steps_per_unit=16,
                           resamples=60)
        gap = forward_gap({1: load(ckpts / "local1")}, global_, images.images, times=DIGIT_TS, seed=0)
    sp = data["speciation"]
    assert sp["kept"] == alone.kept.tolist() and sp["kept_sde"] == alone.kept_sde.tolist()
    assert sp["t_sb"] == alone.t_sb and sp["t_sb_sde"] == alone.t_sb_sde
    assert sp["t_sb_interval"] == list(alone.t_sb_interval) and sp["t_sb_sde_interval"] == list(alone.t_sb_sde_interval)
    assert data["gap"]["1"]["x0"] == pytest.approx(np.asarray(gap.gap)[:, 0].tolist(), rel=1e-5)


def test_checkpoint_run_on_ising(cli, ckpts):
    from phasediff.data.registry import load_dataset
    from phasediff.denoisers.checkpoint import load
    from phasediff.diagnostics.concurrence import CMI_SKIPPED, FD_SKIPPED_ISING
    from phasediff.diagnostics.speciation import class_rule

    argv = ["concurrence", ISING, "--model", ckpts / "ising-global", "--local-model", f"1={ckpts / 'ising-local1'}",
            "--t", ",".join(map(str, ISING_TS)), "--n", "30", "--samples", "16", "--window-width", "0.4",
            "--window-step", "0.3", "--sampler-steps", "6", "--steps-per-unit", "8", "--recovery-steps-per-unit", "8",
            "--resamples", "40", "--json", "--quiet"]
    status, stdout, err = cli(*argv)
    assert status == 0, err
    data = json.loads(stdout)
    assert data["speciation"]["classes"] == 2 and data["radii"] == [1]
    assert data["skipped"]["sliding window FD"] == FD_SKIPPED_ISING and data["skipped"]["cmi"] == CMI_SKIPPED
    assert "|m| in" in data["settings"]["sliding_judge"]
    assert "fd" not in data["sliding"]["r=1,w=0.4"] and "sliding window centre, w = 0.4, r = 1" in {
        m["name"] for m in data["measures"]}
    _brackets(data)
    test = load_dataset(ISING, split="test", n=30, seed=0)
    classify, classes, labels = class_rule(ISING, test)
    np.testing.assert_array_equal(labels, sign_classes(test.images, 0.5))  # the sign of the magnetisation
    with torch.no_grad():
        alone = speciation(load(ckpts / "ising-global"), test.images, labels, classify, ISING_TS, classes=classes,
                           steps_per_unit=8, resamples=40)
    assert data["speciation"]["kept"] == alone.kept.tolist()
    assert data["speciation"]["kept_sde"] == alone.kept_sde.tolist()
    # a CMI run of the Ising data is taken; one of other data is refused
    status, stdout, err = cli(*argv, "--cmi-run", ckpts / "ising-cmi.json")
    assert status == 0, err
    assert "CMI peak, A = 1x1, r = 1" in {m["name"] for m in json.loads(stdout)["measures"]}


def test_judges_of_generated_images():
    from phasediff.classifier import Classifier
    from phasediff.data.registry import load_dataset
    from phasediff.diagnostics.concurrence import classifier_judge, ising_judge

    reference = load_dataset(ISING, split="test", n=1000, seed=0).images
    judge = ising_judge(reference)
    fresh = torch.as_tensor(load_dataset(ISING, split="test", n=1000, seed=1).images)
    assert judge.valid(fresh).mean() > 0.95 and judge.features is None
    domains = fresh.clone()
    domains[..., :4] = 1 - domains[..., :4]  # half the lattice flipped: the sign of m still gives it a class
    assert judge.valid(domains).mean() < 0.05
    torch.manual_seed(0)
    digits = load_dataset("digits", split="test").images
    judge = classifier_judge(Classifier(channels=1, num_classes=10, width=8).eval(), digits, alpha=0.1)
    assert 0.9 <= judge.valid(torch.as_tensor(digits)).mean() < 0.95
    assert judge.reference.shape == (len(digits), 128) and judge.features(torch.as_tensor(digits[:5])).shape == (5, 128)


def test_cmi_run_peaks_and_fd_span():
    from phasediff.diagnostics.concurrence import _fd_span, cmi_run_peaks

    t = [0.1, 0.25, 0.3, 0.5, 0.6]
    curve = [-(x - 0.33) ** 2 for x in t]
    run = {"t": t, "r": [2], "cmi": [[c] for c in curve], "stderr": None, "patch": 3, "estimator": "neural",
           "dataset": "x", "region_sizes": [{"A": 9, "B": 40, "C": 15}]}
    entries, measures, skipped = cmi_run_peaks(run, [1, 2], resamples=50)
    (m,) = measures
    assert m.name == "CMI peak, A = 3x3, r = 2" and m.t == pytest.approx(0.33) and m.low == m.high == m.t
    assert "no radius 1" in skipped["cmi r=1"] and entries["k=3,r=2"]["sizes"]["A"] == 9
    run["stderr"] = [[1e-3]] * 5
    (m,) = cmi_run_peaks(run, [2], resamples=200)[1]
    assert m.low < m.t < m.high and m.high - m.low < 0.2
    centres = np.array([0.2, 0.3, 0.4, 0.5])
    assert _fd_span(centres, np.array([10.0, 1.0, 1.0, 10.0]), 1.0, 20.0) == pytest.approx((0.25, 0.45))
    assert _fd_span(centres, np.array([10.0, 8.0, 9.0, 10.0]), 1.0, 20.0) is None  # no window gets halfway
    assert _fd_span(centres, np.array([1.0, 1.1, 1.0, 1.2]), 1.0, 20.0) is None  # every window does


def test_same_data():
    from phasediff.diagnostics.concurrence import same_data, without_n

    assert same_data("gmm2:L=7", "gmm2:L=7,mu=1,sigma=1") and same_data(ISING, "ising:T=1.50,L=8")
    assert same_data("mnist", "mnist:n=200") and not same_data("mnist", "fashion-mnist")
    assert not same_data(ISING, "ising:L=8,T=1.8") and not same_data("mnist", "mnist:crop=27")
    assert without_n("mnist:n=200") == "mnist" and without_n("ising:L=8,n=5,T=1.5") == ISING  # the judge's reference


@pytest.mark.parametrize("case, words", [
    (lambda ck: ["--local-model", ck / "fashion-local"], "trained on 'fashion-mnist'"),
    (lambda ck: ["--local-model", ck / "shape16-local"], "shape (1, 16, 16)"),
    (lambda ck: ["--local-model", ck / "no-data-local"], "does not record the data"),
    (lambda ck: ["--local-model", ck / "global"], "not a strictly local denoiser"),
    (lambda ck: ["--local-model", ck / "judge"], "a classifier"),
    (lambda ck: ["--local-model", f"2={ck / 'local1'}"], "has radius 1, not 2"),
    (lambda ck: ["--local-model", f"0={ck / 'local1'}"], "has radius 1, not 0"),
    (lambda ck: ["--local-model", ck / "local1", "--local-model", ck / "local1"], "two local checkpoints of radius 1"),
    (lambda ck: ["--local-model", ck / "nowhere"], "not found"),
])
def test_checkpoint_bad_local_models(cli, ckpts, case, words):
    argv = ["concurrence", "digits", "--model", ckpts / "global", "--judge", ckpts / "judge", *case(ckpts), "--quiet"]
    status, out, err = cli(*argv)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err, err


@pytest.mark.parametrize("case, words", [
    (lambda ck: ["digits", "--model", ck / "local1", "--local-model", ck / "local2"], "not a global denoiser"),
    (lambda ck: ["digits", "--model", ck / "judge", "--local-model", ck / "local1"], "a classifier"),
    (lambda ck: ["digits", "--model", ck / "global"], "--local-model"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1"], "no committed classifier"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "none"],
     "not found"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "mnist-judge"],
     "trained on 'mnist'"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "local2"],
     "not a classifier"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-radius", "1"], "--local-radius applies"),
    (lambda ck: ["gmm2:L=7", "--model", "exact", "--local-model", ck / "local1"], "--local-model goes with"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "judge",
                 "--cmi-run", ck / "nowhere"], "run directory"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "judge",
                 "--cmi-run", ck / "not-a-run.json"], "not the results"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "judge",
                 "--cmi-run", ck / "ising-cmi.json"], "not digits"),
    (lambda ck: [ISING, "--model", ck / "ising-global", "--local-model", ck / "flat-ising-local"],
     "not a periodic network"),
    (lambda ck: [ISING, "--model", ck / "ising-global", "--local-model", ck / "local1"], "trained on 'digits'"),
    (lambda ck: [ISING, "--model", ck / "ising-global", "--local-model", ck / "ising-local1", "--judge",
                 ck / "judge"], "takes no --judge"),
    (lambda ck: ["ising:L=8,T=3.0", "--model", ck / "ising-global", "--local-model", ck / "ising-local1"],
     "above T_c"),
    (lambda ck: ["gmm2:L=7", "--model", "exact", "--cmi-run", ck / "cmirun"], "drop --cmi-run"),
    (lambda ck: [ISING, "--model", ck / "ising-global", "--local-model", ck / "ising-local1", "--conditional-model",
                 ck / "cond"], "no class label to condition on"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "judge",
                 "--conditional-model", ck / "global"], "not class-conditional"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "judge",
                 "--conditional-model", ck / "judge"], "not a U-Net"),
    (lambda ck: ["digits", "--model", ck / "global", "--local-model", ck / "local1", "--judge", ck / "judge",
                 "--conditioning-width", "1.2"], "--conditioning-width"),
])
def test_checkpoint_bad_inputs(cli, ckpts, case, words):
    status, out, err = cli("concurrence", *case(ckpts), "--n", "20", "--quiet")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err, err
