"""Physical observables of lattice samples against exact values: T = 0 and T = infinity, full enumeration of the
4 x 4 torus, W1, the verdict, Gaussian covariance errors, and `phasediff judge` on lattice data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from phasediff.data.ising import (
    IsingModel,
    energy_per_spin,
    exact_energy_per_spin,
    magnetisation,
)
from phasediff.data.registry import load_dataset, load_model
from phasediff.errors import PhasediffError
from phasediff.observables import (
    gaussian_observables,
    ising_observables,
    matches,
    wasserstein1,
)


def random_spins(n: int, L: int, seed: int = 0) -> np.ndarray:
    """Independent uniform spins (T = infinity) as images (n, 1, L, L) in {0, 1}."""
    return np.random.default_rng(seed).integers(0, 2, size=(n, 1, L, L)).astype(np.float32)


def inside(interval: dict, value: float, index: int | None = None) -> bool:
    low, high = (interval[k] if index is None else interval[k][index] for k in ("low", "high"))
    return low <= value <= high


def test_all_aligned_state_has_energy_minus_two():
    aligned = np.concatenate([np.ones((20, 1, 8, 8)), np.zeros((20, 1, 8, 8))])  # both signs, T = 0
    report = ising_observables(aligned, aligned, rounds=20).to_dict()
    assert report["energy"] == {"value": -2.0, "low": -2.0, "high": -2.0}
    assert report["abs_magnetisation"]["value"] == 1.0
    assert report["energy_difference"]["value"] == 0.0 and report["w1_abs_magnetisation"]["value"] == 0.0


def test_independent_spins_have_zero_energy_and_no_correlations():
    report = ising_observables(random_spins(1000, 16, seed=1), random_spins(1000, 16, seed=2)).to_dict()
    assert inside(report["energy"], 0.0) and inside(report["energy_difference"], 0.0)
    correlation = report["correlation"]
    assert correlation["value"][0] == pytest.approx(1.0, abs=1e-4)
    assert len(correlation["value"]) == 16 // 2 + 1
    for d in range(1, 9):  # eight 95% intervals miss once in three draws: allow twice the half-width (~4 s.e.)
        low, high = correlation["low"][d], correlation["high"][d]
        assert abs(correlation["value"][d]) <= high - low, d
    assert inside(correlation, 0.0, 1)
    assert report["correlation_length"]["value"] < 0.5  # xi_2 -> 0 without correlations


def enumerated(L: int, T: float) -> tuple[float, float]:
    """Exact <E>/N and <|m|> of the L x L torus by summing over all 2^(L*L) configurations."""
    codes = np.arange(2 ** (L * L))
    spins = ((codes[:, None] >> np.arange(L * L)) & 1).astype(np.int8).reshape(-1, L, L)
    energy, m = energy_per_spin(spins), magnetisation(spins)
    weights = np.exp(-(energy - energy.min()) * L * L / T)
    weights /= weights.sum()
    return float(weights @ energy), float(weights @ np.abs(m))


@pytest.mark.parametrize("T", [1.8, 3.0])
def test_four_by_four_torus_matches_enumeration(T):
    exact_energy, exact_abs_m = enumerated(4, T)
    assert exact_energy == pytest.approx(exact_energy_per_spin(4, T), abs=1e-6)  # the enumeration itself
    samples, _ = IsingModel(4, T).sample(4000, np.random.default_rng(3))
    report = ising_observables(samples, samples).to_dict()
    assert inside(report["energy"], exact_energy)
    assert inside(report["abs_magnetisation"], exact_abs_m)


def test_wasserstein_is_zero_against_itself_and_the_shift_against_a_shifted_set():
    values = np.random.default_rng(4).random(300)
    assert wasserstein1(values, values) == 0.0
    assert wasserstein1(values, values + 0.1) == pytest.approx(0.1)
    other = np.random.default_rng(5).normal(size=170)
    assert wasserstein1(values, other) == pytest.approx(wasserstein_distance(values, other))
    rows = np.stack([values, values + 0.2])  # leading axes: one distance per row
    assert wasserstein1(rows, values) == pytest.approx([0.0, 0.2])


# Below T_c the energy and |m| of an 8 x 8 torus fluctuate little (per configuration ~0.06 and ~0.02 at T = 1.5), so
# a few hundred exact samples meet the verdict's tolerances with a wide margin; at T = 3 the energy per spin of
# L = 8 fluctuates by ~0.3 per configuration and 400 exact samples can miss |dE| <= 0.03.
SMALL_ORDERED = "ising:L=8,T=1.5"


def test_verdict_follows_the_tolerances():
    samples = load_dataset(SMALL_ORDERED, split="train", n=300).images
    same = ising_observables(samples, load_dataset(SMALL_ORDERED, split="test", n=1000).images)
    assert matches(same)
    gap, w1 = abs(same.energy_difference.value), same.w1_abs_magnetisation.value
    assert not matches(same, energy_tol=0.9 * gap) and not matches(same, w1_tol=0.9 * w1)
    assert not matches(same, correlation_tol=0.9 * same.correlation_difference.value)
    hot = ising_observables(random_spins(300, 8), samples)  # T = infinity against T = 1.5
    assert not matches(hot)


def test_correlation_difference_is_the_largest_gap_up_to_a_quarter_of_the_lattice():
    ordered = load_dataset(SMALL_ORDERED, split="train", n=300).images
    hot = ising_observables(random_spins(300, 8), ordered)  # C(d) ~ 0 against the plateau m_0^2 ~ 0.9
    gaps = np.abs(hot.correlation.value - hot.correlation_reference.value)[1:3]  # d = 1, 2 on L = 8
    assert hot.correlation_difference.value == pytest.approx(gaps.max())
    assert hot.correlation_difference.value > 0.8
    assert hot.correlation_difference.low <= hot.correlation_difference.value <= hot.correlation_difference.high


def test_gaussian_covariance_error_is_small_and_shrinks_with_n():
    model = load_model("gmrf:L=8,kappa=1")
    small, large = (gaussian_observables(load_dataset("gmrf:L=8,kappa=1", n=n).images, model.covariance,
                                         reference=load_dataset("gmrf:L=8,kappa=1", split="test", n=n).images)
                    for n in (200, 3200))
    assert len(large.covariance_error.value) == 8
    assert np.all(large.covariance_error.value < small.covariance_error.value / 2)  # ~ 1/sqrt(n): 4x
    assert large.relative_frobenius.value < 0.15
    assert large.relative_frobenius.value / large.relative_frobenius_floor == pytest.approx(1, abs=0.3)
    wrong = gaussian_observables(load_dataset("gmrf:L=8,kappa=1", n=3200).images,
                                 load_model("gmrf:L=8,kappa=2").covariance)
    assert wrong.relative_frobenius.low > 3 * large.relative_frobenius.high


def test_observables_refuse_bad_shapes():
    with pytest.raises(PhasediffError):
        ising_observables(random_spins(10, 8), random_spins(10, 6))
    with pytest.raises(PhasediffError):
        gaussian_observables(np.zeros((10, 1, 4, 4)), np.eye(64))


def test_judge_ising_samples_of_the_model_match(cli_json, tmp_path):
    path = tmp_path / "samples.npz"
    np.savez(path, images=load_dataset(SMALL_ORDERED, split="train", n=300).images)
    report = cli_json("judge", path, "--data", SMALL_ORDERED)
    assert report["kind"] == "ising" and report["n"] == 300 and report["n_reference"] == 1000
    assert report["matches"] is True
    assert len(report["correlation"]["value"]) == 5 and report["correlation_length"]["value"] > 0


def test_judge_gaussian_field(cli, tmp_path):
    path = tmp_path / "samples.npz"
    np.savez(path, images=load_dataset("gmrf:L=8,kappa=1", split="train", n=300).images)
    status, out, err = cli("judge", path, "--data", "gmrf:L=8,kappa=1")
    assert status == 0, err
    assert "relative Frobenius error" in out and "Chebyshev distance 0" in out


def test_judge_refuses_samples_of_another_shape_in_one_line(cli, tmp_path):
    path = tmp_path / "samples16.npz"
    np.savez(path, images=random_spins(20, 16))
    status, out, err = cli("judge", path, "--data", "ising:L=8,T=3")
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "do not match" in err


def test_lattice_copies_find_training_configurations():
    import numpy as np

    from phasediff.data.registry import load_dataset
    from phasediff.observables import lattice_copies

    train = load_dataset("ising:L=8,T=3.0", split="train", n=300).images
    fresh = load_dataset("ising:L=8,T=3.0", split="test", n=100).images
    copied = lattice_copies(train[:50], train)
    assert copied["copied_fraction"] == 1.0 and copied["nearest_hamming_median"] == 0.0
    new = lattice_copies(fresh, train)
    assert new["copied_fraction"] < 0.05 and 0.05 < new["nearest_hamming_median"] < 0.5
    flipped = lattice_copies(1 - train[:10], train)  # every spin flipped: half the sites differ at most
    assert flipped["copied_fraction"] <= 0.1 and np.isfinite(flipped["nearest_hamming_median"])


def test_ising_features_are_the_per_configuration_observables():
    """Energy, |m|, G_c(1..L/4) and S_c(k_min)/N of each configuration: for the all-up state -2, 1, 1, 1 and 0; the
    Frechet distance on them tells the ordered phase from the disordered one, not two draws of the same model."""
    from phasediff.metrics import FrechetReference, classify
    from phasediff.observables import IsingFeatures

    up = np.ones((1, 1, 8, 8), np.float32)
    features, probabilities = classify(IsingFeatures(), up)
    np.testing.assert_allclose(features, [[-2.0, 1.0, 1.0, 1.0, 0.0]], atol=1e-12)
    assert probabilities.shape == (1, 0)
    hot = [load_dataset("ising:L=8,T=3.0", split=split, n=400).images for split in ("train", "test")]
    cold = load_dataset("ising:L=8,T=1.5", split="train", n=400).images
    same, other, reference = (classify(IsingFeatures(), x)[0] for x in (hot[0], cold, hot[1]))
    yardstick = FrechetReference.of(reference)
    assert yardstick.distance(other) > 20 * yardstick.distance(same)


def test_the_planner_judges_ising_data_by_its_observables(cli_json, cli, tmp_path):
    """`phasediff plan` on Ising checkpoints needs no classifier (a given --judge is refused) and returns a schedule."""
    import torch

    from phasediff.denoisers.checkpoint import save
    from phasediff.denoisers.local import LocalDenoiser
    from phasediff.denoisers.unet import UNet

    extra = {"data": "ising:L=8,T=3.0", "image_shape": [1, 8, 8]}
    torch.manual_seed(0)
    save(tmp_path / "global", UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8), extra, weights="ema")
    save(tmp_path / "local", LocalDenoiser(1, width=4), extra, weights="ema")
    args = ["plan", "--model", f"global={tmp_path / 'global'}", "--model", f"local={tmp_path / 'local'}",
            "--steps", "10", "--n", "16", "--precision", "fp32", "--no-cache"]
    plan = cli_json(*args)
    assert plan["reference"] == "global" and plan["schedule"] and plan["images_sampled"] <= plan["sweep_images"] / 3
    status, _, err = cli(*args, "--judge", tmp_path / "global")
    assert status == 2 and "physical observables" in err and len(err.strip().splitlines()) == 1
