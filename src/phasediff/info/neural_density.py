"""Exact-form densities of a noised target x_t = (1 - t) x_0 + t z, given a model of the posterior of x_0.

A categorical posterior over levels v_k (8-bit data: v_k = k / 255) with probabilities pi_k gives

    p_t(x) = sum_k pi_k N(x; (1 - t) v_k, t^2),

and a Gaussian-mixture posterior (pi_k, m_k, s_k) gives

    p_t(x) = sum_k pi_k N(x; (1 - t) m_k, (1 - t)^2 s_k^2 + t^2).

Only the posterior is learned; the noise is known. The cross-entropy of one target, averaged over its own
noise given x_0, E_z[-log p_t((1 - t) x_0 + t z)] with z ~ N(0, 1), is a one-dimensional Gaussian integral,
done by Gauss-Hermite quadrature (this removes the noise on the target from the variance of the estimate).
At t = 0 the categorical density is the discrete probability pi_{k*} of the observed level.

For the categorical head the Gaussian factors g_jk = N((1 - t) x_0 + t z_j; (1 - t) v_k, t^2) do not depend on
the network, so p_t at node j is the product sum_k pi_k g_jk: one matrix product per target, shared by every
context (radius) that predicts it, instead of a log-sum-exp over (contexts x nodes x levels).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from phasediff.paths import add_noise, noised_variance

LOG_2PI = math.log(2 * math.pi)
MIN_SCALE = 1e-3  # smallest component standard deviation of the mixture head, in units of the data std


def hermite_rule(nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and log-weights of the probabilists' Gauss-Hermite rule: E f(z) ~ sum_j w_j f(z_j), z ~ N(0, 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    return torch.tensor(z, dtype=torch.float32), torch.tensor(np.log(w / w.sum()), dtype=torch.float32)


class CategoricalHead:
    """Posterior of x_0 on fixed levels: the network emits one logit per level."""

    kind = "categorical"

    def __init__(self, levels: np.ndarray):
        self.levels = torch.as_tensor(np.asarray(levels, dtype=np.float32))

    @property
    def n_outputs(self) -> int:
        return len(self.levels)

    def components(self, out: torch.Tensor, scale: float, offset: float) -> tuple[torch.Tensor, ...]:
        """(log pi, means, clean variances) of the posterior; scale and offset are unused here."""
        return F.log_softmax(out, -1), self.levels.to(out.device), torch.zeros((), device=out.device)

    def discrete_nll(self, out: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """-log pi_{k*} with v_{k*} the level nearest to x_0."""
        index = torch.bucketize(x0.contiguous(), self._midpoints(out.device))
        return -F.log_softmax(out, -1).gather(-1, index[..., None])[..., 0]

    def _midpoints(self, device) -> torch.Tensor:
        levels = self.levels.to(device)
        return 0.5 * (levels[1:] + levels[:-1])


class MixtureHead:
    """Posterior of x_0 as a K-component Gaussian mixture: the network emits (logit, mean, log-scale) each."""

    kind = "mixture"

    def __init__(self, components: int):
        self.k = int(components)

    @property
    def n_outputs(self) -> int:
        return 3 * self.k

    def components(self, out: torch.Tensor, scale: float, offset: float) -> tuple[torch.Tensor, ...]:
        """(log pi, means m = offset + scale * raw, clean variances s^2 = (scale * softplus(raw))^2)."""
        logits, mean, raw = out.split(self.k, -1)
        std = scale * (F.softplus(raw) + MIN_SCALE)
        return F.log_softmax(logits, -1), offset + scale * mean, std**2


def expected_nll(head, out: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, rule: tuple[torch.Tensor, torch.Tensor],
                 scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """E_z[-log p_t((1 - t) x_0 + t z | context)] per target, by quadrature; out (..., n_outputs), x0 and t
    broadcastable to out's leading dimensions (..., ) (pass them unexpanded: the categorical head's Gaussian
    factors are then computed once per target, not once per context).

    With v_k = (1 - t)^2 s_k^2 + t^2 and d_jk = (1 - t)(x_0 - m_k) + t z_j (the target's offset from the
    component mean at node z_j), log p_t = logsumexp_k [log pi_k - d_jk^2 / (2 v_k) - log(2 pi v_k) / 2].
    A categorical head at t = 0 uses the discrete cross-entropy instead.
    """
    with torch.autocast(out.device.type, enabled=False):
        out = out.float()
        nodes, log_w = (r.to(out.device) for r in rule)
        if head.kind == "categorical":
            log_p = _categorical_log_density(head, out, x0, t, nodes)
        else:
            log_p = _mixture_log_density(head, out, x0, t, nodes, scale, offset)
        nll = -(log_p * log_w.exp()).sum(-1)
        if head.kind == "categorical":
            shape = out.shape[:-1]
            nll = torch.where(t == 0, head.discrete_nll(out, x0.expand(shape)), nll)
    return nll


def _mixture_log_density(head, out, x0, t, nodes, scale, offset) -> torch.Tensor:
    """log p_t at every node, (..., J): a log-sum-exp over the components."""
    log_pi, means, var0 = head.components(out, scale, offset)
    var = noised_variance(var0, t[..., None])
    d = add_noise((x0[..., None] - means)[..., None, :], t[..., None, None], nodes[:, None])
    log_comp = log_pi[..., None, :] - 0.5 * (d**2 / var[..., None, :] + torch.log(var)[..., None, :] + LOG_2PI)
    return torch.logsumexp(log_comp, -1)


def _categorical_log_density(head, out, x0, t, nodes) -> torch.Tensor:
    """log sum_k pi_k g_jk at every node, (..., J), as a product of max-shifted exponentials; the rare
    entries where that underflows (posterior and noised target far apart) are redone by log-sum-exp."""
    log_pi = F.log_softmax(out, -1)
    levels = head.levels.to(out.device)
    t = torch.where(t == 0, torch.ones_like(t), t)  # t = 0 takes the discrete cross-entropy (expected_nll)
    tt = t[..., None, None]
    d = add_noise(x0[..., None, None] - levels, tt, nodes[:, None])  # (x0's shape, J, K)
    log_g = -0.5 * (d / tt) ** 2 - torch.log(tt) - 0.5 * LOG_2PI
    g_max = log_g.amax(-1)
    pi_max = log_pi.amax(-1)
    total = torch.einsum("...k,...jk->...j", (log_pi - pi_max[..., None]).exp(), (log_g - g_max[..., None]).exp())
    log_p = torch.log(total) + pi_max[..., None] + g_max
    lost = total < 1e-30
    if bool(lost.any()):
        where = lost.any(-1).nonzero(as_tuple=True)
        shape = log_pi.shape[:-1] + log_g.shape[-2:]
        exact = torch.logsumexp(log_pi[where][:, None, :] + log_g.expand(shape)[where], -1)
        log_p = log_p.index_put(where, exact)
    return log_p
