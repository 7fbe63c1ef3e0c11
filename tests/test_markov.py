import numpy as np
import pytest

from phasediff.errors import PhasediffError
from phasediff.info.markov import markov_length, nonlocality_window, peak_time, resolved, summarise

R = np.arange(1, 13)


def test_exact_exponential_decay_gives_the_markov_length():
    xi = np.array([0.5, 2.0, 5.0])
    cmi = 0.2 * np.exp(-R[None, :] / xi[:, None])
    fit = markov_length([0.1, 0.5, 0.9], R, cmi)
    assert np.allclose(fit.xi, xi) and np.allclose(fit.gamma, 0.2)
    assert np.allclose(fit.xi_low, xi) and np.allclose(fit.xi_high, xi)


def test_noisy_decays_are_covered_by_the_interval():
    rng = np.random.default_rng(0)
    xi, gamma, se = 3.0, 0.1, 0.002
    covered, estimates = 0, []
    for _ in range(300):
        cmi = gamma * np.exp(-R / xi) + se * rng.standard_normal(len(R))
        fit = markov_length([0.3], R, cmi[None, :], np.full((1, len(R)), se))
        estimates.append(fit.xi[0])
        covered += fit.xi_low[0] <= xi <= fit.xi_high[0]
        assert all(v > 2 * se for v in cmi[np.isin(R, fit.resolved_radii[0])])
    assert abs(np.median(estimates) - xi) < 0.2
    assert 0.88 <= covered / 300 <= 0.99


def test_unresolved_and_flat_curves():
    se = np.full((2, len(R)), 0.01)
    cmi = np.vstack([np.full(len(R), 0.001), np.full(len(R), 0.05)])
    fit = markov_length([0.0, 1.0], R, cmi, se)
    assert fit.xi[0] is None and fit.resolved_radii[0] == []
    assert fit.xi[1] > 1e6 and fit.xi_high[1] == float("inf")  # no decay: the interval is open
    assert not resolved(np.array([0.0, -1.0]), None).any()


def test_peak_and_window_of_an_exact_bump():
    t = np.linspace(0, 1, 11)
    curve = np.exp(-((t - 0.4) ** 2) / 0.02)
    assert peak_time(t, curve)["t_peak"] == pytest.approx(0.4)
    window = nonlocality_window(t, curve, 0.5)
    half = 0.4 - np.sqrt(0.02 * np.log(2))
    assert window["t_start"] == pytest.approx(half, abs=0.02)
    assert window["t_end"] == pytest.approx(0.8 - half, abs=0.02)
    assert window["t_start_low"] == window["t_start_high"] == window["t_start"]


def test_window_interval_grows_with_noise_and_missing_window():
    t = np.linspace(0, 1, 11)
    curve = np.exp(-((t - 0.4) ** 2) / 0.02)
    noisy = nonlocality_window(t, curve, 0.5, error=np.full(11, 0.05))
    assert noisy["t_start_low"] < noisy["t_start"] < noisy["t_start_high"]
    none = nonlocality_window(t, curve, 2.0)
    assert none["t_start"] is None and none["fraction_of_draws_above"] == 0.0
    with pytest.raises(PhasediffError):
        nonlocality_window(t, curve, 0.0)


def test_summarise_on_the_two_component_mixture():
    from phasediff.data.gmm2 import TwoComponentMixture

    t = np.linspace(0, 1, 101)
    model = TwoComponentMixture(27)
    cmi = np.stack([model.cmi(t, 1, (2 * r + 1) ** 2 - 1, 729 - (2 * r + 1) ** 2) for r in (1, 2, 3)], axis=1)
    out = summarise(t, [1, 2, 3], cmi, delta=0.01)
    assert out["peak"]["t_peak"] == pytest.approx(t[np.argmax(cmi[:, 0])])
    assert out["window"]["t_start"] < out["peak"]["t_peak"] < out["window"]["t_end"]
    xi = out["markov_length"]["xi"]
    assert xi[70] > xi[30]  # the Markov length grows towards the transition


def test_infinite_markov_lengths_serialise_to_standard_json(tmp_path):
    import json

    from phasediff.info.result import CMIResult
    from phasediff.report.runs import write_cmi_run

    flat = CMIResult(t=[0.3], r=[1, 2, 3], cmi=np.array([[0.05, 0.05, 0.05]]), stderr=np.full((1, 3), 0.001),
                     estimator="gaussian", dataset="flat", site=(4, 4), patch=1, region_sizes=[], seconds=0.0)
    write_cmi_run(tmp_path / "run", flat, {})
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["analysis"]["markov_length"]["xi_high"] == ["inf"]
