"""2D Ising model (Swendsen-Wang): exact observables, the sampler against exact results (Onsager, Kaufman's
finite-lattice energy, full enumeration of a 4 x 4 torus), reproducibility and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chisquare

from phasediff.data.ising import (
    CRITICAL_TEMPERATURE,
    IsingModel,
    energy_per_spin,
    exact_correlation_length,
    exact_energy_per_spin,
    magnetisation,
    onsager_magnetisation,
    to_spins,
)
from phasediff.errors import PhasediffError


def all_configurations(L: int) -> np.ndarray:
    """Every spin configuration of an L x L lattice in {0, 1}, shape (2^(L*L), L, L)."""
    codes = np.arange(2 ** (L * L))
    return ((codes[:, None] >> np.arange(L * L)) & 1).astype(np.int8).reshape(-1, L, L)


def brute_force_energy(L: int, T: float) -> float:
    spins = all_configurations(L)
    energy = energy_per_spin(spins)
    weights = np.exp(-(energy - energy.min()) * L * L / T)
    return float(np.sum(weights * energy) / np.sum(weights))


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


# ---------------------------------------------------------------- exact quantities and observables


def test_critical_temperature_and_onsager():
    assert CRITICAL_TEMPERATURE == pytest.approx(2.269185314, abs=1e-9)
    assert onsager_magnetisation(1.5) == pytest.approx(0.98650, abs=1e-5)
    assert onsager_magnetisation(2.0) == pytest.approx(0.91132, abs=1e-5)
    assert onsager_magnetisation(0.1) == pytest.approx(1.0, abs=1e-12)
    assert onsager_magnetisation(CRITICAL_TEMPERATURE) == 0.0
    assert onsager_magnetisation(3.5) == 0.0
    values = onsager_magnetisation(np.array([1.0, 2.0, 2.26, 2.3]))
    assert values.shape == (4,) and np.all(np.diff(values) <= 0) and values[-1] == 0.0
    with pytest.raises(PhasediffError):
        onsager_magnetisation(0.0)


@pytest.mark.parametrize("L", [2, 3, 4])
def test_kaufman_energy_matches_enumeration(L):
    for T in (1.0, CRITICAL_TEMPERATURE, 3.0, 10.0):
        assert exact_energy_per_spin(L, T) == pytest.approx(brute_force_energy(L, T), abs=1e-8)


def test_kaufman_energy_tends_to_onsager_at_tc():
    # at T_c the infinite-lattice energy is -sqrt(2); the finite-size correction shrinks like 1/L
    gaps = [exact_energy_per_spin(L, CRITICAL_TEMPERATURE) + math.sqrt(2) for L in (16, 32, 64, 128)]
    assert all(g < 0 for g in gaps)
    assert np.allclose(np.array(gaps[:-1]) / np.array(gaps[1:]), 2.0, atol=0.02)


def test_observables_on_known_configurations():
    up = np.ones((6, 6), dtype=np.int8)
    checkerboard = np.indices((6, 6)).sum(axis=0) % 2  # {0, 1}
    assert magnetisation(up)[0] == 1.0 and energy_per_spin(up)[0] == -2.0
    assert magnetisation(checkerboard)[0] == 0.0 and energy_per_spin(checkerboard)[0] == 2.0
    stripes = np.tile(np.array([1, 1, -1, -1, 1, 1], dtype=np.int8)[:, None], (1, 6))  # {-1, +1}, row stripes
    assert magnetisation(stripes)[0] == pytest.approx(1 / 3)
    # along rows: 36 aligned bonds; along columns: 4 aligned and 2 opposed in each of 6 columns
    assert energy_per_spin(stripes)[0] == pytest.approx(-(36 + 12) / 36)
    # the {0, 1} image convention and the {-1, +1} convention agree, for (L, L), (n, L, L), (n, 1, L, L)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 2, size=(5, 1, 7, 7)).astype(np.float32)
    spins = 2 * images - 1
    assert np.allclose(magnetisation(images), magnetisation(spins[:, 0]))
    assert np.allclose(energy_per_spin(images), energy_per_spin(spins))
    assert np.allclose(magnetisation(images), images.mean(axis=(1, 2, 3)) * 2 - 1)
    assert np.array_equal(to_spins(np.array([0.2, 0.7]), threshold=0.5), [-1, 1])
    for bad in (np.array([0, -1, 1]), np.array([0.5, 1.0]), np.zeros((2, 2, 3, 3))):
        with pytest.raises(PhasediffError):
            magnetisation(bad)


# ---------------------------------------------------------------- sampler basics


def test_samples_are_binary_images_with_the_right_shape():
    model = IsingModel(8, 2.0)
    assert model.shape == (1, 8, 8)
    assert "L=8" in model.describe() and "T=2" in model.describe() and "Swendsen-Wang" in model.describe()
    images, labels = model.sample(5, np.random.default_rng(0))
    assert labels is None
    assert images.dtype == np.float32 and images.shape == (5, 1, 8, 8)
    assert set(np.unique(images)) <= {0.0, 1.0}


def test_seeded_reproducibility():
    model = IsingModel(12, CRITICAL_TEMPERATURE, burn_in=20)
    a, _ = model.sample(7, np.random.default_rng(3))
    b, _ = model.sample(7, np.random.default_rng(3))
    c, _ = model.sample(7, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    thinned = IsingModel(12, CRITICAL_TEMPERATURE, burn_in=20, thin=3, chains=4)
    d, _ = thinned.sample(10, np.random.default_rng(3))
    e, _ = thinned.sample(10, np.random.default_rng(3))
    assert d.shape == (10, 1, 12, 12) and np.array_equal(d, e)


def test_several_chunks(monkeypatch):
    # several chunks (forced small) still return n distinct, valid samples
    import phasediff.data.ising as ising

    monkeypatch.setattr(ising, "MAX_SITES_PER_CHUNK", 3 * 16)
    model = IsingModel(4, 1.0, burn_in=10)
    assert model.chunk == 3
    images, _ = model.sample(10, np.random.default_rng(0))
    assert images.shape == (10, 1, 4, 4)
    # at T = 1 a 4 x 4 torus is almost always fully ordered, either sign
    m = magnetisation(images)
    assert np.all(np.abs(m) > 0.7) and (m > 0).any() and (m < 0).any()


@pytest.mark.parametrize(
    "kwargs",
    [dict(L=1, T=2.0), dict(L=0, T=2.0), dict(L=2.5, T=2.0), dict(L=True, T=2.0), dict(L=8, T=0.0),
     dict(L=8, T=-1.0), dict(L=8, T=float("nan")), dict(L=8, T=float("inf")), dict(L=8, T="hot"),
     dict(L=8, T=2.0, burn_in=-1), dict(L=8, T=2.0, thin=0), dict(L=8, T=2.0, chains=0)],
)
def test_bad_input_is_a_one_line_error(kwargs):
    with pytest.raises(PhasediffError) as info:
        IsingModel(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_sample_requests():
    model = IsingModel(4, 2.0)
    for n in (0, -3, 2.0):
        with pytest.raises(PhasediffError):
            model.sample(n, np.random.default_rng(0))
    with pytest.raises(PhasediffError):
        model.sample(3, 0)


# ---------------------------------------------------------------- sampler against exact results


def test_detailed_balance_on_a_4x4_torus():
    # the joint histogram of (E, |M|) over 20,000 independent chains against full enumeration of 2^16 states
    L, T, n = 4, CRITICAL_TEMPERATURE, 20_000
    images, _ = IsingModel(L, T, burn_in=30).sample(n, np.random.default_rng(11))

    def cells(x):
        e = np.rint(energy_per_spin(x) * L * L).astype(int)  # even integers in [-32, 32]
        m = np.rint(np.abs(magnetisation(x)) * L * L).astype(int)  # even integers in [0, 16]
        return (e + 32) * 17 + m

    states = all_configurations(L)
    weights = np.exp(-energy_per_spin(states) * L * L / T)
    expected = np.bincount(cells(states), weights=weights, minlength=65 * 17) / weights.sum() * n
    observed = np.bincount(cells(images), minlength=65 * 17).astype(float)
    assert observed[expected == 0].sum() == 0
    big = expected >= 5  # pool the rare cells into one
    f_obs = np.append(observed[big], observed[~big].sum())
    f_exp = np.append(expected[big], expected[~big].sum())
    assert big.sum() >= 10
    assert chisquare(f_obs, f_exp).pvalue > 1e-3


def test_very_high_temperature_is_disordered():
    L, T = 32, 1000.0
    images, _ = IsingModel(L, T).sample(200, np.random.default_rng(5))
    energy, se = mean_and_se(energy_per_spin(images))
    assert abs(energy) < 0.02
    assert abs(energy - exact_energy_per_spin(L, T)) < 4 * se
    assert abs(images.mean() - 0.5) < 0.01


@pytest.mark.parametrize("T", [1.5, 2.0])
def test_ordered_phase_matches_onsager(T):
    images, _ = IsingModel(32, T).sample(300, np.random.default_rng(int(T * 10)))
    m = np.abs(magnetisation(images))
    mean, se = mean_and_se(m)
    assert se < 0.004
    assert abs(mean - onsager_magnetisation(T)) < 0.02
    # both ordered states appear (the sampler is not stuck in one)
    signed = magnetisation(images)
    assert 0.35 < np.mean(signed > 0) < 0.65


def test_disordered_phase_has_small_magnetisation():
    images, _ = IsingModel(32, 3.5).sample(300, np.random.default_rng(35))
    mean, se = mean_and_se(np.abs(magnetisation(images)))
    assert mean < 0.1 and se < 0.01


def test_energy_at_the_critical_point():
    L, T = 32, 2.269
    images, _ = IsingModel(L, T).sample(1200, np.random.default_rng(2269))
    mean, se = mean_and_se(energy_per_spin(images))
    assert se < 0.004
    assert abs(mean + math.sqrt(2)) < 0.03  # infinite-lattice value
    assert abs(mean - exact_energy_per_spin(L, T)) < 4 * se  # exact value for the 32 x 32 torus (-1.4342)


def test_exact_correlation_length_has_the_known_limits():
    assert exact_correlation_length(CRITICAL_TEMPERATURE) is None and exact_correlation_length(1.8) is None
    assert exact_correlation_length(CRITICAL_TEMPERATURE * 1.001) > 100  # diverges at T_c
    for T, tolerance in ((100.0, 1e-2), (1000.0, 1e-3)):  # high-temperature series: C(d) = tanh(K)^d
        assert exact_correlation_length(T) == pytest.approx(-1 / math.log(math.tanh(1 / T)), rel=tolerance)


@pytest.mark.slow
def test_exact_correlation_length_matches_sampled_correlations():
    """Ornstein-Zernike along an axis, C(d) ~ d^(-1/2) exp(-d / xi): xi from C(3) / C(5) of Swendsen-Wang samples
    at T = 3 (xi = 2.14 << L = 32) within 10%."""
    from phasediff.observables import ising_observables

    images, _ = IsingModel(32, 3.0).sample(1000, np.random.default_rng(0))
    C = ising_observables(images, images, rounds=2).correlation.value
    xi = 2 / (math.log(C[3] / C[5]) - 0.5 * math.log(5 / 3))
    assert xi == pytest.approx(exact_correlation_length(3.0), rel=0.1)
