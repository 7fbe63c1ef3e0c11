"""The local-recovery bound check (info/bound.py): the conditional TV against a brute-force integration, TV = 0
when A - B - C is Markov, the gmm2 CMI against its closed form, and TV^2 <= I, 2 TV^2 <= I on a small grid."""

import numpy as np
import pytest

from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.info.bound import (
    EnumeratedSpins,
    gmm2_bound,
    ising_torus,
    path_channel,
    spins_bound,
)

# a 3-site chain A - B - C of binary pixels that is not Markov (configuration k: bit 0 = A, 1 = B, 2 = C)
CHAIN_LOG_WEIGHTS = np.log([4.0, 1.0, 1.0, 3.0, 1.0, 5.0, 2.0, 1.0])


def normal(x, mean, sd):
    return np.exp(-0.5 * ((x - mean) / sd) ** 2) / (np.sqrt(2 * np.pi) * sd)


def brute_force_tv_kl(log_weights, t, channel, x_b, x_c, points=2001):
    """TV(p(.|b,c), q(.|b,c)) and KL(p(.|b,c) || p(.|b)) from the definitions on grids over a, y and a':
    q(a') = int da p(a|b,c) int dy N(y; g a, s^2) p(a'|y,b), p(a'|y,b) ∝ p(a', b) N(y; g a', s^2)."""
    g, s = channel
    prob = np.exp(log_weights) / np.exp(log_weights).sum()
    bits = (np.arange(8)[:, None] >> np.arange(3)) & 1
    a = np.linspace(-4.0, 5.0, points)
    da = a[1] - a[0]
    like_a = normal(a[:, None], (1 - t) * bits[:, 0], t)  # (grid, 8)
    p_ab = like_a @ (prob * normal(x_b, (1 - t) * bits[:, 1], t))
    p_abc = like_a @ (prob * normal(x_b, (1 - t) * bits[:, 1], t) * normal(x_c, (1 - t) * bits[:, 2], t))
    p_b, p_bc = p_ab / (p_ab.sum() * da), p_abc / (p_abc.sum() * da)
    y = np.linspace(g * a[0] - 8 * s, g * a[-1] + 8 * s, points)
    dy = y[1] - y[0]
    channel_density = normal(y[None], g * a[:, None], s)  # (a, y)
    posterior = p_b[None] * channel_density.T  # (y, a')
    posterior /= posterior.sum(1, keepdims=True) * da
    q = (p_bc * da) @ channel_density * dy @ posterior
    return 0.5 * np.abs(p_bc - q).sum() * da, (p_bc * np.log(p_bc / p_b)).sum() * da


def test_channel_takes_x_t_to_x_t_plus_dt():
    for t, dt in [(0.0, 0.1), (0.3, 1 / 32), (0.9, 0.1)]:
        g, s = path_channel(t, dt)
        assert g * (1 - t) == pytest.approx(1 - t - dt, abs=1e-12)
        assert g**2 * t**2 + s**2 == pytest.approx((t + dt) ** 2)


@pytest.mark.parametrize("t, dt", [(0.3, 1 / 32), (0.5, 0.2)])
def test_conditional_tv_matches_brute_force(t, dt):
    chain = EnumeratedSpins(CHAIN_LOG_WEIGHTS, 0, [1], [2])
    x = np.array([[0.0, 0.2, 0.9], [0.0, 0.6, -0.1], [0.0, 1.1, 0.4]])
    tv, kl = chain.exact_tv_kl(x, t, path_channel(t, dt))
    expected = np.array([brute_force_tv_kl(CHAIN_LOG_WEIGHTS, t, path_channel(t, dt), *row[1:]) for row in x])
    assert tv.min() > 1e-3  # a case where the recovery is visibly imperfect
    np.testing.assert_allclose(tv, expected[:, 0], rtol=2e-4)
    np.testing.assert_allclose(kl, expected[:, 1], rtol=1e-8)


def test_tv_is_zero_when_markov():
    rng = np.random.default_rng(0)
    points = spins_bound(ising_torus(4, 2.269), 0.0, [1 / 32, 0.2], 300, rng)
    for point in points:
        assert abs(point.tv) < 1e-12 and abs(point.cmi) < 1e-12
        assert not point.violation and not point.sharp_violation
    # the chain made Markov: p(a, b, c) = p(a, b) p(c | b), at t > 0 the noise breaks it (TV > 0)
    markov = np.log(np.array([0.3, 0.1, 0.2, 0.4])[np.arange(8) & 3] * np.array([[0.8, 0.2], [0.3, 0.7]])[
        (np.arange(8) >> 1) & 1, np.arange(8) >> 2])
    chain = EnumeratedSpins(markov, 0, [1], [2])
    assert spins_bound(chain, 0.0, [0.1], 200, rng)[0].tv < 1e-12
    assert spins_bound(chain, 0.4, [0.1], 200, rng)[0].tv > 1e-4


def test_gmm2_cmi_equals_closed_form():
    for mu, sigma in [(1.0, 1.0), (0.5, 1.0)]:
        model = TwoComponentMixture(5, mu, sigma)
        for t in (0.3, 0.6, 0.9):
            point = gmm2_bound(model, t, 1, [1 / 32], nodes=48)[0]
            assert point.cmi == pytest.approx(point.cmi_exact, rel=2e-3)
            assert abs(point.cmi - point.cmi_exact) <= point.cmi_err


def test_bound_holds_on_a_small_grid():
    model = TwoComponentMixture(5)
    points = [p for t in (0.3, 0.6, 0.9) for p in gmm2_bound(model, t, 1, [1 / 32, 0.1], nodes=32)]
    chain = EnumeratedSpins(CHAIN_LOG_WEIGHTS, 0, [1], [2])
    points += spins_bound(chain, 0.5, [1 / 32, 0.2], 2000, np.random.default_rng(1))
    assert all(p.tv > 0 and p.cmi > 0 for p in points)
    assert not any(p.violation or p.sharp_violation for p in points)
    record = points[0].to_dict()
    assert {"t", "r", "tv", "tv_err", "cmi", "cmi_err", "two_tv2", "slack", "violation"} <= set(record)
