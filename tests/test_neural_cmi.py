"""The neural CMI estimator: density heads against closed forms, the network's ring causality, the paired
statistics, and end-to-end estimates on small Gaussian cases whose CMI is known exactly."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import integrate

from phasediff.data.dataset import Dataset
from phasediff.errors import PhasediffError
from phasediff.precision import resolve_precision
from phasediff.info import neural as neural_estimator
from phasediff.info.cmi import flat_partitions, measure_cmi
from phasediff.info.gaussian import gaussian_cmi_grid
from phasediff.info.neural import (best_nested, choose_head, lower_bound_times, paired_statistics, reported_interval,
                                   settings_with)
from phasediff.info.neural_density import CategoricalHead, MixtureHead, expected_nll, hermite_rule
from phasediff.info.neural_net import Geometry, NetConfig, RingNet
from phasediff.info.neural_train import TrainConfig, image_nll
from phasediff.regions import tripartition
from phasediff.rundir import to_json


def test_mixture_head_matches_the_gaussian_closed_form():
    """One component N(m, s^2) convolved with the noise: E_z[-log N((1-t) x0 + t z; (1-t) m, v)] with
    v = (1-t)^2 s^2 + t^2 is log(2 pi v) / 2 + ((1-t)^2 (x0 - m)^2 + t^2) / (2 v)."""
    head = MixtureHead(1)
    m, s = 0.3, 0.7
    raw = math.log(math.expm1(s - 1e-3))  # softplus^-1, less the head's floor
    out = torch.tensor([[0.0, m, raw]]).expand(4, 3)
    t = torch.tensor([0.05, 0.3, 0.7, 1.0])
    x0 = torch.tensor([1.2, -0.4, 0.3, 2.0])
    got = expected_nll(head, out, x0, t, hermite_rule(24))
    v = (1 - t) ** 2 * s**2 + t**2
    want = 0.5 * torch.log(2 * math.pi * v) + ((1 - t) ** 2 * (x0 - m) ** 2 + t**2) / (2 * v)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [0.1, 0.4, 0.8])
def test_categorical_head_matches_numerical_integration(t):
    """sum_k pi_k N(x; (1-t) v_k, t^2) against scipy's quadrature of -E_z log p_t((1-t) x0 + t z)."""
    levels = np.array([0.0, 0.3, 1.0])
    logits = torch.tensor([0.2, -1.0, 0.5])
    head, x0 = CategoricalHead(levels), 0.3
    pi = torch.softmax(logits, 0).numpy()

    def integrand(z):
        x = (1 - t) * x0 + t * z
        p = np.sum(pi * np.exp(-((x - (1 - t) * levels) ** 2) / (2 * t**2)) / math.sqrt(2 * math.pi * t**2))
        return -math.log(p) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    want = integrate.quad(integrand, -12, 12, limit=200)[0]
    got = expected_nll(head, logits[None], torch.tensor([x0]), torch.tensor([t]), hermite_rule(24))
    assert float(got) == pytest.approx(want, abs=2e-3)


def _categorical_reference(levels, logits, x0, t, rule):
    """float64 log-sum-exp over levels at every quadrature node, each context separately."""
    nodes, log_w = (r.double() for r in rule)
    log_pi = torch.log_softmax(logits.double(), -1)
    x = ((1 - t) * x0)[..., None] + t[..., None] * nodes  # (..., J)
    log_g = -0.5 * ((x[..., None] - (1 - t)[..., None, None] * levels) / t[..., None, None]) ** 2 \
        - torch.log(t)[..., None, None] - 0.5 * math.log(2 * math.pi)
    return -(torch.logsumexp(log_pi[..., None, :] + log_g, -1) * log_w.exp()).sum(-1)


@pytest.mark.parametrize("sharp", [False, True])
def test_categorical_density_shared_across_contexts_matches_log_sum_exp(sharp):
    """The product form, with x_0 and t given once per target for 5 contexts, against float64 log-sum-exp;
    sharp: posteriors far from the noised target at small t, where the product underflows and the
    log-sum-exp fallback must take over."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    head, rule = CategoricalHead(levels.numpy()), hermite_rule(12)
    g = torch.Generator().manual_seed(3)
    logits = 4 * torch.randn(6, 5, 2, 256, generator=g)
    x0 = torch.randint(0, 256, (6, 1, 2), generator=g) / 255.0
    t = torch.tensor([0.02, 0.1, 0.3, 0.6, 0.9, 1.0])[:, None, None]
    if sharp:
        logits[..., 255] += 120.0  # exp(-120) underflows in float32
        x0 = torch.zeros_like(x0)
        t = torch.full_like(t, 0.01)
    got = expected_nll(head, logits, x0, t, rule)
    want = _categorical_reference(levels, logits, x0.double().expand(6, 5, 2), t.double().expand(6, 5, 2), rule)
    assert got.shape == (6, 5, 2) and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-4)


def test_categorical_head_at_t0_is_the_discrete_cross_entropy():
    head = CategoricalHead(np.arange(256) / 255.0)
    logits = torch.randn(3, 256)
    x0 = torch.tensor([0.0, 17 / 255, 1.0])
    got = expected_nll(head, logits, x0, torch.zeros(3), hermite_rule(8))
    want = -torch.log_softmax(logits, -1)[torch.arange(3), torch.tensor([0, 17, 255])]
    torch.testing.assert_close(got, want)


def test_choose_head_by_data():
    levels = np.random.default_rng(0).integers(0, 256, (10, 1, 3, 3)) / 255.0
    assert choose_head(levels, "auto", 4).kind == "categorical"
    assert choose_head(np.random.default_rng(0).normal(size=(100, 1, 3, 3)), "auto", 4).kind == "mixture"
    with pytest.raises(PhasediffError):
        choose_head(np.random.default_rng(0).normal(size=(100, 1, 3, 3)), "categorical", 4)
    with pytest.raises(PhasediffError):
        choose_head(np.zeros((10, 1, 3, 3)), "nonsense", 4)


def test_network_output_for_radius_r_sees_only_the_ring_of_radius_r():
    """d out[:, r] / d x_p = 0 for every pixel p farther than r from A and for A itself; nonzero at r."""
    geometry = Geometry((1, 9, 9), (4, 4), 1)
    torch.manual_seed(0)
    net = RingNet(geometry, 3, NetConfig(width=32))
    for p in net.parameters():  # zero-initialised layers would hide a leak
        torch.nn.init.normal_(p, std=0.3)
    distance = torch.as_tensor(geometry.distance)
    for r in range(geometry.n_rings + 1):
        x = torch.randn(2, 1, 9, 9, requires_grad=True)
        net(x, torch.tensor([0.3, 0.6]), torch.zeros(2, 1))[:, r].sum().backward()
        grad = x.grad.abs().sum((0, 1))
        assert grad[(distance > r) | (distance == 0)].max() == 0
        if r > 0:
            assert grad[distance == r].max() > 0


def test_best_nested_model_sees_no_more_than_radius_r():
    val = np.array([[3.0, 2.0, 2.5, 1.0], [1.0, 2.0, 3.0, 4.0], [5.0, 4.0, 3.0, 2.0]])
    np.testing.assert_array_equal(best_nested(val), [[0, 1, 1, 3], [0, 0, 0, 0], [0, 1, 2, 3]])


def test_paired_statistics_mean_stderr_and_interval():
    diff = np.random.default_rng(0).normal(0.2, 1.0, size=(4000, 2))
    stats = paired_statistics(diff, 500, seed=0)
    np.testing.assert_allclose(stats["mean"], diff.mean(0))
    np.testing.assert_allclose(stats["stderr"], diff.std(0, ddof=1) / np.sqrt(4000))
    assert np.all(stats["low"] < stats["mean"]) and np.all(stats["mean"] < stats["high"])
    np.testing.assert_allclose(stats["high"] - stats["low"], 2 * 1.96 * stats["stderr"], rtol=0.15)


def test_points_below_the_resolution_get_an_upper_limit():
    stats = {"mean": np.array([0.0, 0.002, 0.03]), "low": np.array([0.0, 0.001, 0.02]),
             "high": np.array([0.0, 0.003, 0.04])}
    low, high = reported_interval(stats, np.array([0.005, 0.005, 0.005]))
    np.testing.assert_allclose(low, [0.0, 0.0, 0.02])
    np.testing.assert_allclose(high, [0.005, 0.005, 0.04])


def test_lower_bounds_where_the_validated_mode_reads_low():
    """The validated mode's lower bounds are the t with (1 - t) sigma / t > SHARP_SNR: t <= 0.2 at MNIST's pixel
    std (where it read 49-66% of the exact CMI on the MNIST-fitted mixture), none from t = 0.3; the amortised
    network's estimates are lower bounds at every t < 1."""
    ts = np.round(np.linspace(0, 1, 11), 1)
    np.testing.assert_array_equal(ts[lower_bound_times(ts, 0.317, specialised=True)], [0.0, 0.1, 0.2])
    np.testing.assert_array_equal(ts[lower_bound_times(ts, 0.317, specialised=False)], ts[:-1])


def test_a_lower_bound_is_open_above():
    stats = {"mean": np.array([0.002, 0.03, 0.03]), "low": np.array([0.001, 0.02, 0.02]),
             "high": np.array([0.003, 0.04, 0.04])}
    low, high = reported_interval(stats, np.full(3, 0.005), lower_bound=np.array([True, True, False]))
    np.testing.assert_allclose(low, [0.0, 0.02, 0.02])
    assert np.isinf(high[:2]).all() and high[2] == 0.04
    assert json.loads(to_json({"high": high}))["high"] == ["inf", "inf", 0.04]  # the project's JSON for infinity


def line_covariance() -> np.ndarray:
    """A 1 x 7 Gaussian image whose centre pixel talks directly to the two end pixels (precision entries),
    so that I(A:C|B_1) and I(A:C|B_2) are large (about 0.14 and 0.13 nats at t = 0.2)."""
    q = np.eye(7)
    for i in range(6):
        q[i, i + 1] = q[i + 1, i] = -0.25
    q[3, 0] = q[0, 3] = q[3, 6] = q[6, 3] = -0.35
    return np.linalg.inv(q)


def test_neural_estimate_on_a_small_gaussian_case():
    cov = line_covariance()
    rng = np.random.default_rng(1)
    images = (rng.standard_normal((6000, 7)) @ np.linalg.cholesky(cov).T).reshape(-1, 1, 1, 7).astype(np.float32)
    data = Dataset(images, None, "line")
    ts, rs = [0.2, 0.5], [1, 2]
    parts = [tripartition((1, 7), r, (0, 3)) for r in rs]
    exact = gaussian_cmi_grid(cov, ts, flat_partitions((1, 1, 7), parts))
    assert exact[0, 0] > 0.05  # the case is not trivial
    settings = settings_with(epochs=20, test=2000, val=500, net=NetConfig(width=64), components=4)
    result = measure_cmi(data, ts, rs, estimator="neural", site=(0, 3), neural=settings)
    assert result.stderr is not None and np.all(result.stderr > 0)
    assert np.all(np.abs(result.cmi - exact) < np.maximum(0.02, 4 * result.stderr)), (result.cmi, exact)
    low, high = result.details["interval_low"], result.details["interval_high"]
    assert np.all(low <= result.cmi) and np.all(result.cmi <= high)


def test_cli_json_has_stderr(cli_json, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "line.npz"
    cov = line_covariance()
    np.savez(path, images=(rng.standard_normal((1500, 7)) @ np.linalg.cholesky(cov).T).reshape(-1, 1, 1, 7))
    out = cli_json("cmi", path, "--estimator", "neural", "--t", "0.3", "--r", "1", "--site", "0,3",
                   "--epochs", "2", "--specialise", "0", "--cache", "none")
    assert out["estimator"] == "neural"
    assert len(out["stderr"]) == 1 and out["stderr"][0][0] > 0
    assert out["details"]["interval"].startswith("percentile bootstrap")
    assert out["details"]["lower_bound"] == [[True]] and out["details"]["interval_high"] == [["inf"]]


def test_default_estimator_is_exact_or_the_validated_neural_mode(cli_json, tmp_path):
    """No --estimator: exact where the model has it, else neural, whose default is the validated mode (5,000
    specialisation steps per t, chained, training precision resolved for the machine)."""
    from phasediff.cli import _neural_settings, build_parser
    from phasediff.info.neural import VALIDATED_EPOCHS, VALIDATED_SPECIALISE

    assert cli_json("cmi", "grf:L=9,ell=2", "--t", "0.5", "--r", "1")["estimator"] == "exact"
    path = tmp_path / "line.npz"
    np.savez(path, images=np.random.default_rng(0).standard_normal((600, 1, 1, 7)))
    out = cli_json("cmi", path, "--t", "0.3", "--r", "1", "--site", "0,3", "--epochs", "1", "--specialise", "0",
                   "--cache", "none")
    assert out["estimator"] == "neural" and out["details"]["specialised"] == []
    train = _neural_settings(build_parser().parse_args(["cmi", "digits"])).train
    assert (train.epochs, train.specialise, train.specialise_chain, train.precision) == (
        VALIDATED_EPOCHS, VALIDATED_SPECIALISE, True, resolve_precision("auto"))
    train = _neural_settings(build_parser().parse_args(["cmi", "digits", "--no-specialise-chain"])).train
    assert train.specialise == VALIDATED_SPECIALISE and not train.specialise_chain
    quick = _neural_settings(build_parser().parse_args(["cmi", "digits", "--specialise", "0"])).train
    assert not quick.specialise_chain and quick.epochs == 12


def test_committed_networks_serve_without_training(tmp_path, monkeypatch):
    """A chained run's networks, saved in the committed layout (DATA/cmi/), serve a later run with no cache at
    any t of that run, alone or in another grid, without training; its link at t serves whatever chain led there."""
    cov = line_covariance()
    rng = np.random.default_rng(3)
    images = (rng.standard_normal((1500, 7)) @ np.linalg.cholesky(cov).T).reshape(-1, 1, 1, 7).astype(np.float32)
    data = Dataset(images, None, "line")
    base = dict(epochs=1, test=500, val=200, net=NetConfig(width=16), components=2, specialise=20,
                specialise_chain=True, specialise_everywhere=True)
    first = measure_cmi(data, [0.3, 0.6], [1], estimator="neural", site=(0, 3),
                        neural=settings_with(**base, cache=tmp_path / "cache"))
    settings = settings_with(**base, cache=tmp_path / "cache")
    written = neural_estimator.save_networks(first.details, settings, tmp_path / "root" / "line" / "cmi")
    assert len(written) == 6 and all(path.is_file() for path in written)  # amortised + 2 links, weights + sidecar

    def no_training(*args, **kwargs):
        raise AssertionError("a committed network was trained again")

    monkeypatch.setattr(neural_estimator, "train", no_training)
    alone = measure_cmi(data, [0.3], [1], estimator="neural", site=(0, 3),
                        neural=settings_with(**base, committed=tmp_path / "root"))
    (link,) = alone.details["specialised"]
    assert alone.details["committed"] and link["committed"] and link["after"] == first.details["specialised"][0]["after"]
    np.testing.assert_allclose(alone.cmi[0], first.cmi[0])
    with pytest.raises(AssertionError, match="trained again"):  # a t that was not committed is trained
        measure_cmi(data, [0.45], [1], estimator="neural", site=(0, 3),
                    neural=settings_with(**base, committed=tmp_path / "root"))


def test_specialised_networks_fit_each_t_and_are_cached(tmp_path):
    """Specialisation trains one copy per t on top of the cached amortised network (bf16 training), keeps the
    estimate on the exact value, and is read back from the cache on a second call."""
    cov = line_covariance()
    rng = np.random.default_rng(2)
    images = (rng.standard_normal((4000, 7)) @ np.linalg.cholesky(cov).T).reshape(-1, 1, 1, 7).astype(np.float32)
    data = Dataset(images, None, "line")
    ts, rs = [0.2, 0.5], [1, 2]
    exact = gaussian_cmi_grid(cov, ts, flat_partitions((1, 1, 7), [tripartition((1, 7), r, (0, 3)) for r in rs]))
    base = dict(epochs=6, test=1500, val=500, net=NetConfig(width=64), components=4, cache=tmp_path,
                precision="bf16", specialise_everywhere=True)
    amortised = measure_cmi(data, ts, rs, estimator="neural", site=(0, 3), neural=settings_with(**base))
    special = measure_cmi(data, ts, rs, estimator="neural", site=(0, 3), neural=settings_with(**base, specialise=300))
    runs = special.details["specialised"]
    assert [run["t"] for run in runs] == ts and all(run["steps"] > 0 and not run["cached"] for run in runs)
    assert all((run["generalisation_gap"] is None) == (run["best_step"] == 0) for run in runs)
    assert amortised.details["specialised"] == [] and special.details["cache_key"] == amortised.details["cache_key"]
    assert np.all(np.abs(special.cmi - exact) < np.maximum(0.02, 4 * special.stderr)), (special.cmi, exact)
    again = measure_cmi(data, ts, rs, estimator="neural", site=(0, 3), neural=settings_with(**base, specialise=300))
    assert all(run["cached"] for run in again.details["specialised"])
    np.testing.assert_array_equal(again.cmi, special.cmi)
    chained = measure_cmi(data, ts + [1.0], rs, estimator="neural", site=(0, 3),
                          neural=settings_with(**base, specialise=300, specialise_chain=True))
    runs = chained.details["specialised"]
    assert runs[2]["specialised"] is False  # t = 1 is pure noise: the chain starts below it
    assert np.all(np.abs(chained.cmi[2]) < np.maximum(0.01, 4 * chained.stderr[2]))
    assert runs[1]["after"] == [] and runs[1]["cached"] and runs[1]["restart"] == {}
    restart = runs[0]["restart"]
    no_better, gap = restart["chain_val"] >= restart["amortised_val"], restart["generalisation_gap"]
    memorises = gap is not None and gap > neural_estimator.MEMORISATION_GAP
    assert (restart["reason"] is not None) == (no_better or memorises)
    assert restart["restarted"] == (restart["reason"] is not None and restart["retrained_val"] <= restart["chain_val"])
    assert runs[0]["after"] == ([] if restart["restarted"] else [0.5])
    assert runs[0]["best_val"] <= restart["amortised_val"] + 1e-6
    assert np.all(np.abs(chained.cmi[:2] - exact) < np.maximum(0.02, 4 * chained.stderr[:2])), (chained.cmi, exact)


def test_specialisation_is_spent_only_where_it_can_change_the_report(tmp_path, monkeypatch):
    """By default no link trains at t = 1, at lower-bound t, or where the amortised CMI is far below the resolution
    (independent pixels: exactly 0); the amortised network's estimate serves there, as with --specialise 0.
    A resolved t (the line at t = 0.6, exact 0.029 at r = 1) is specialised, and so is every t < 1 with
    specialise_everywhere. (The rule trusts the amortised network to read at least 1 / AMORTISED_SHORTFALL of the
    exact value: one trained for a few steps reads 0 everywhere and would skip the line's t = 0.6 too.)"""
    rng = np.random.default_rng(5)
    noise = Dataset(rng.standard_normal((1500, 1, 1, 7)).astype(np.float32), None, "noise")
    line = Dataset((rng.standard_normal((4000, 7)) @ np.linalg.cholesky(line_covariance()).T)
                   .reshape(-1, 1, 1, 7).astype(np.float32), None, "line")
    real, trained = neural_estimator.specialised_network, []

    def recorded(start, head, standardise, splits, t, *args, **kwargs):
        trained.append(t)
        return real(start, head, standardise, splits, t, *args, **kwargs)

    monkeypatch.setattr(neural_estimator, "specialised_network", recorded)
    base = dict(epochs=1, test=500, val=200, net=NetConfig(width=16), components=2, cache=tmp_path,
                specialise_chain=True)
    ts = [0.2, 0.7, 1.0]
    lean = measure_cmi(noise, ts, [1, 2], estimator="neural", site=(0, 3), neural=settings_with(**base, specialise=20))
    reasons = [link["reason"] for link in lean.details["specialised"]]
    assert trained == [] and [link["specialised"] for link in lean.details["specialised"]] == [False] * 3
    assert "lower bound" in reasons[0] and "far below the resolution" in reasons[1] and "pure noise" in reasons[2]
    assert lean.details["lower_bound"][:, 0].tolist() == [True, False, False]
    plain = measure_cmi(noise, ts, [1, 2], estimator="neural", site=(0, 3), neural=settings_with(**base, specialise=0))
    np.testing.assert_array_equal(lean.cmi, plain.cmi)
    measure_cmi(noise, ts, [1, 2], estimator="neural", site=(0, 3),
                neural=settings_with(**base, specialise=20, specialise_everywhere=True))
    assert trained == [0.7, 0.2]  # the chain, from the largest t < 1 down
    trained.clear()
    trained_enough = {**base, "epochs": 6, "test": 1500, "val": 500, "net": NetConfig(width=32), "specialise": 20}
    resolved = measure_cmi(line, [0.6], [1], estimator="neural", site=(0, 3), neural=settings_with(**trained_enough))
    assert trained == [0.6] and resolved.details["specialised"][0]["steps"] == 20


def _links_validating_at(value):
    """`specialised_network` whose copies along a chain (not the first, not the retrained ones) report the
    validation cross-entropy ``value`` (None: their own)."""
    real = neural_estimator.specialised_network

    def specialised(start, head, standardise, splits, t, settings, key, seed, chain=()):
        special, meta = real(start, head, standardise, splits, t, settings, key, seed, chain)
        if chain and value is not None:
            meta = {**meta, "history": {**meta["history"], "best_val": value}}
        return special, meta

    return specialised


def test_a_chain_link_no_better_than_the_amortised_network_or_memorising_is_retrained_from_it(tmp_path, monkeypatch):
    """The chain's copy at t is kept if it validates below the amortised network at t and does not memorise;
    otherwise a copy is also trained from the amortised network (never worse than it: it keeps its best
    weights, the start included) and replaces it unless it validates worse (and then the estimate is the
    unchained one)."""
    rng = np.random.default_rng(4)
    images = (rng.standard_normal((2000, 7)) @ np.linalg.cholesky(line_covariance()).T).reshape(-1, 1, 1, 7)
    data = Dataset(images.astype(np.float32), None, "line")
    base = dict(epochs=2, test=500, val=300, net=NetConfig(width=32), components=2, cache=tmp_path, specialise=60,
                specialise_everywhere=True)
    plain = measure_cmi(data, [0.2, 0.5], [1], estimator="neural", site=(0, 3), neural=settings_with(**base))
    real_val, real_gap, gap = (neural_estimator.validation_loss_at, neural_estimator.generalisation_gap,
                               neural_estimator.MEMORISATION_GAP)
    cases = (  # (amortised network's validation, chain link's validation, link's gap, reason, restarted)
        (None, np.inf, None, "no better than the amortised network", True),
        (np.inf, 1e9, 2 * gap, "memorises", True),
        (-np.inf, -1e9, None, "no better than the amortised network", False),
        (np.inf, None, gap / 2, None, False),
    )
    for amortised_val, link_val, link_gap, reason, restarted in cases:
        monkeypatch.setattr(neural_estimator, "validation_loss_at",
                            real_val if amortised_val is None else lambda *args, v=amortised_val: v)
        monkeypatch.setattr(neural_estimator, "generalisation_gap",
                            real_gap if link_gap is None else lambda history, g=link_gap: g)
        monkeypatch.setattr(neural_estimator, "specialised_network", _links_validating_at(link_val))
        chained = measure_cmi(data, [0.2, 0.5], [1], estimator="neural", site=(0, 3),
                              neural=settings_with(**base, specialise_chain=True))
        link = chained.details["specialised"][0]["restart"]
        assert (link["reason"], link["restarted"]) == (reason, restarted)
        assert ("retrained_val" in link) == (reason is not None)
        assert chained.details["specialised"][0]["after"] == ([] if restarted else [0.5])
        if amortised_val is None:
            assert link["retrained_val"] <= link["amortised_val"] + 1e-6
        if restarted:
            np.testing.assert_array_equal(chained.cmi, plain.cmi)


def test_generalisation_gap_is_read_at_the_best_step():
    history = {"step": [0, 200, 400], "val": [1.0, 0.8, 0.85], "train": [float("nan"), 0.7, 0.6], "best_step": 200}
    assert neural_estimator.generalisation_gap(history) == pytest.approx(0.1)
    assert neural_estimator.generalisation_gap({**history, "best_step": 0}) is None


def test_a_specialisation_runs_all_its_steps(tmp_path, monkeypatch):
    """Early stopping ends the amortised training only: a specialisation starts from a network already good
    at its t, so it runs every step (keeping the best weights) even when the first checks bring no gain."""
    rng = np.random.default_rng(3)
    images = (rng.standard_normal((1500, 7)) @ np.linalg.cholesky(line_covariance()).T).reshape(-1, 1, 1, 7)
    data = Dataset(images.astype(np.float32), None, "line")
    real_train, specialisations = neural_estimator.train, []

    def train(*args, fixed_t=None, **kwargs):
        history = real_train(*args, fixed_t=fixed_t, **kwargs)
        if fixed_t is not None:
            specialisations.append(history)
        return history

    monkeypatch.setattr(neural_estimator, "train", train)
    impatient = replace(TrainConfig(), epochs=1, eval_every=10, patience=1, specialise=150)
    result = measure_cmi(data, [0.3, 0.6], [1], estimator="neural", site=(0, 3),
                         neural=settings_with(train=impatient, test=500, val=300, net=NetConfig(width=32),
                                              components=2, cache=tmp_path, specialise_everywhere=True))
    runs = result.details["specialised"]
    assert [run["steps"] for run in runs] == [150, 150] and len(specialisations) == 2
    for run, history in zip(runs, specialisations):
        assert history["step"] == list(range(0, 151, 10)) and history["stop"] == "epochs"
        best = int(np.argmin(history["val"]))
        assert (run["best_step"], run["best_val"]) == (history["step"][best], history["val"][best])


def test_cli_rejects_bad_specialisation_and_pooling(cli, tmp_path):
    path = tmp_path / "line.npz"
    np.savez(path, images=np.random.default_rng(0).standard_normal((300, 1, 1, 7)))
    status, _, err = cli("cmi", path, "--estimator", "neural", "--specialise", "-1", "--quiet")
    assert status == 2 and "--specialise must be >= 0" in err
    status, _, err = cli("cmi", path, "--estimator", "neural", "--pool", "-1", "--quiet")
    assert status == 2 and "--pool must be >= 0" in err
    status, _, err = cli("cmi", path, "--estimator", "neural", "--pool", "2", "--epochs", "1", "--r", "1", "--quiet")
    assert status == 2 and "must stay inside the 1 x 7 image" in err and not list(tmp_path.glob("*/results.json"))


def test_unknown_training_precision_is_refused():
    images = np.random.default_rng(0).standard_normal((400, 1, 1, 7)).astype(np.float32)
    settings = settings_with(epochs=1, test=100, val=50, precision="fp16")
    with pytest.raises(PhasediffError, match="precision must be one of auto, fp32, bf16"):
        measure_cmi(Dataset(images, None, "noise"), [0.3], [1], estimator="neural", site=(0, 3), neural=settings)


def test_held_out_draw_is_what_the_test_cross_entropies_see(monkeypatch):
    """Exact entropies computed on held_out_draw are paired with the estimator's cross-entropies."""
    rng = np.random.default_rng(4)
    images = rng.standard_normal((1000, 1, 1, 7)).astype(np.float32)
    settings = settings_with(epochs=1, test=200, val=100, net=NetConfig(width=16), components=2)
    seen = []

    def spy(net, head, standardise, x0, t, z, rule):
        seen.append((x0.clone(), z.clone()))
        return image_nll(net, head, standardise, x0, t, z, rule)

    monkeypatch.setattr(neural_estimator, "image_nll", spy)
    measure_cmi(Dataset(images, None, "noise"), [0.3], [1], estimator="neural", site=(0, 3), neural=settings, seed=3)
    x0, z = neural_estimator.held_out_draw(images, settings, seed=3)
    assert x0.shape == (200, 1, 1, 7)
    assert any(torch.equal(a, torch.as_tensor(x0)) and torch.equal(b, torch.as_tensor(z)) for a, b in seen)
    other, _ = neural_estimator.held_out_draw(images, settings, seed=4)
    assert not np.array_equal(other, x0)


def test_integer_and_float_settings_share_a_cache_key():
    """The CLI parses --epochs 4 as 4.0; the API may be given 4: both must find the same cached network."""
    images = np.random.default_rng(0).standard_normal((300, 1, 1, 7)).astype(np.float32)
    geometry, head = Geometry((1, 1, 7), (0, 3), 1), MixtureHead(2)
    keys = {neural_estimator._cache_key(images, geometry, head, settings_with(epochs=e, budget=b), 0)
            for e, b in ((4, 60), (4.0, 60.0))}
    assert len(keys) == 1
    assert neural_estimator._cache_key(images, geometry, head, settings_with(epochs=5), 0) not in keys


def test_translate_moves_the_site_to_A_and_marks_pixels_from_outside():
    from phasediff.info.neural_net import translate

    images = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5) + 1
    shift = torch.tensor([[1, -2], [0, 0]])
    out, valid = translate(images, shift)
    assert torch.equal(out[1], images[1]) and bool(valid[1].all())
    for i in range(5):
        for j in range(5):
            inside = 0 <= i + 1 < 5 and 0 <= j - 2 < 5
            assert valid[0, 0, i, j] == float(inside)
            assert out[0, 0, i, j] == (images[0, 0, i + 1, j - 2] if inside else 0)


def test_a_pooled_network_at_a_shifted_site_sees_only_the_rings_around_that_site():
    """Through the translation, out[:, r] depends only on pixels within r of A + shift (and not on that site)."""
    from phasediff.info.neural_net import translate

    geometry = Geometry((1, 9, 9), (4, 4), 1)
    torch.manual_seed(0)
    net = RingNet(geometry, 3, NetConfig(width=32, pool=2))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    shift = torch.tensor([[2, -1], [-2, 2]])
    for b in range(2):
        site = (4 + int(shift[b, 0]), 4 + int(shift[b, 1]))
        distance = torch.as_tensor(Geometry((1, 9, 9), site, 1).distance)
        for r in (1, 3, geometry.n_rings):
            x = torch.randn(1, 1, 9, 9, requires_grad=True)
            moved, valid = translate(x, shift[b: b + 1])
            net(moved, torch.tensor([0.4]), torch.zeros(1, 1), valid=valid, shift=shift[b: b + 1])[:, r].sum().backward()
            grad = x.grad.abs()[0, 0]
            assert grad[(distance > r) | (distance == 0)].max() == 0
            assert grad[distance == 1].max() > 0


def test_pooling_beyond_the_border_is_refused():
    with pytest.raises(PhasediffError, match="inside"):
        RingNet(Geometry((1, 9, 9), (1, 4), 1), 3, NetConfig(width=16, pool=2))


def stationary_long_range_covariance(L: int = 11) -> np.ndarray:
    """An L x L Gaussian field whose pixels couple to their neighbours and, directly, to the pixels 3 away along
    each axis (precision entries), so that I(A:C|B_r) is large for r < 3 (about 0.13 nats at t = 0.2) and the
    law is the same at every site away from the border."""
    q = np.eye(L * L)
    for i in range(L):
        for j in range(L):
            for dy, dx, w in ((0, 1, 0.05), (1, 0, 0.05), (0, 3, 0.22), (3, 0, 0.22)):
                for sign in (1, -1):
                    y, x = i + sign * dy, j + sign * dx
                    if 0 <= y < L and 0 <= x < L:
                        q[i * L + j, y * L + x] = -w
    return np.linalg.inv(q)


def test_pooled_estimate_on_a_stationary_field():
    """Pooling over the 25 sites around A (shared weights) keeps the estimate on the exact value."""
    cov = stationary_long_range_covariance()
    rng = np.random.default_rng(3)
    images = (rng.standard_normal((3000, 121)) @ np.linalg.cholesky(cov).T).reshape(-1, 1, 11, 11).astype(np.float32)
    ts, rs = [0.2, 0.5], [1, 2, 3]
    exact = gaussian_cmi_grid(cov, ts, flat_partitions((1, 11, 11), [tripartition((11, 11), r) for r in rs]))
    assert exact[0, 0] > 0.1  # the case is not trivial
    settings = settings_with(epochs=8, test=1000, val=300, net=NetConfig(width=64, pool=2), components=4)
    result = measure_cmi(Dataset(images, None, "field"), ts, rs, estimator="neural", neural=settings)
    assert np.all(np.abs(result.cmi - exact) < np.maximum(0.02, 4 * result.stderr)), (result.cmi, exact)


def test_the_pooled_training_loss_is_read_at_a_alone():
    """The memorisation gap compares validation at A with the training loss of the images read at A."""
    from phasediff.info.neural_train import loss_at_a

    nll = torch.arange(24.0).reshape(4, 3, 2)  # per-image means 2.5, 8.5, 14.5, 20.5
    shift = torch.tensor([[0, 0], [1, 0], [0, 0], [0, -1]])
    assert loss_at_a(nll, shift).tolist() == [2.5, 14.5]
    assert loss_at_a(nll, None).tolist() == [2.5, 8.5, 14.5, 20.5]
