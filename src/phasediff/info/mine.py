"""MINE: the Donsker-Varadhan lower bound I(X:Y) >= E_p(x,y)[T] - log E_p(x)p(y)[e^T], maximised over a critic T.

The paper estimates I_t(A:C|B_r) = I_t(A:BC) - I_t(A:B_r) with two separately trained critics. Two protocols
run the same critic so that they can be compared on the same data:

- ``paper``: one fixed noise draw per training image for the whole run, the estimate is the mean of the bound
  over the last 10% of training steps on the training batches, I(A:BC) is the maximum of ``runs`` runs, and
  CMI = max(0, I(A:BC) - I(A:B_r));
- ``sound``: fresh noise at every step; after training the bound is evaluated on held-out images with fresh
  noise, in large batches whose spread gives the standard error; I(A:BC) is the mean of the runs (I(A:B_r)
  takes one run in both protocols) and the
  CMI difference is reported unclipped, with the two standard errors combined.

Product-of-marginals samples pair each context with the A-value of another image in the batch (a shift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from phasediff.data.dataset import Dataset
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise
from phasediff.progress import progress
from phasediff.regions import tripartition

PROTOCOLS = ("paper", "sound")


@dataclass(frozen=True)
class MineSettings:
    protocol: str = "sound"
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    runs: int = 1
    eval_batches: int = 20
    eval_batch_size: int = 1000
    held_out: int = 10_000
    width: int = 32

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise PhasediffError(f"MINE protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if min(self.steps, self.batch_size, self.runs, self.eval_batches, self.eval_batch_size) < 1:
            raise PhasediffError("MINE steps, batch sizes, runs and evaluation batches must be >= 1")


def dv_bound(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """E_joint[T] - log E_marginal[e^T] (Donsker-Varadhan)."""
    return joint.mean() - (torch.logsumexp(marginal, 0) - math.log(len(marginal)))


class PairCritic(nn.Module):
    """T(x, y) for vectors: an MLP on the concatenation."""

    def __init__(self, dim_x: int, dim_y: int, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_x + dim_y, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, y], dim=1)).squeeze(1)


class ImageCritic(nn.Module):
    """T(x_A, context): a small CNN on [context image with A zeroed, visibility mask, x_A painted on A]."""

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3 * channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1),
        )

    def forward(self, a_image: torch.Tensor, context: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        mask = visible.expand_as(context).to(context.dtype)
        return self.net(torch.cat([context * mask, mask, a_image], dim=1)).squeeze(1)


def mine_pair(x: np.ndarray, y: np.ndarray, settings: MineSettings = MineSettings(), seed: int = 0) -> dict:
    """MINE of I(X:Y) for paired samples of vectors (the critic's sanity check on known answers)."""
    settings.check()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    n_eval = min(settings.held_out, len(x) // 2)
    critic = PairCritic(x.shape[1], y.shape[1], 2 * settings.width)
    optimiser = torch.optim.Adam(critic.parameters(), lr=settings.lr)
    train_x, train_y = x[n_eval:], y[n_eval:]
    for _ in range(settings.steps):
        idx = torch.randint(0, len(train_x), (settings.batch_size,), generator=g)
        bx, by = train_x[idx], train_y[idx]
        loss = -dv_bound(critic(bx, by), critic(bx, by.roll(1, 0)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        ex, ey = x[:n_eval], y[:n_eval]
        value = float(dv_bound(critic(ex, ey), critic(ex, ey.roll(1, 0))))
    return {"mi": value, "held_out": n_eval}


def _images_and_masks(data: Dataset, site, patch: int, radius: int | None):
    """A mask and the visible mask (B_r, or B and C when radius is None) as (1, 1, H, W) tensors."""
    H, W = data.shape[1:]
    part = tripartition((H, W), radius or 1, site, patch)
    a = torch.from_numpy(part.A)[None, None]
    visible = ~a if radius is None else torch.from_numpy(part.B)[None, None]
    return a, visible


def _critic_inputs(x_t: torch.Tensor, a: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image holding x_A of the image ``shift`` places along the batch, everywhere else 0; context x_t)."""
    a = a.expand_as(x_t).to(x_t.dtype)
    return x_t.roll(shift, 0) * a, x_t


def mine_information(data: Dataset, t: float, site, patch: int, radius: int | None, settings: MineSettings,
                     seed: int = 0) -> tuple[float, float]:
    """(estimate, standard error or NaN) of I_t(A : visible) with one critic run per ``settings.runs``."""
    settings.check()
    x0_all = torch.from_numpy(data.images)
    n_eval = min(settings.held_out, len(data) // 5)
    if len(data) - n_eval < settings.batch_size:
        raise PhasediffError(f"MINE needs more images than one batch plus the held-out set, got {len(data)}")
    train_x0, eval_x0 = x0_all[n_eval:], x0_all[:n_eval]
    a, visible = _images_and_masks(data, site, patch, radius)
    estimates, errors = [], []
    for run in range(settings.runs if radius is None else 1):  # repeated runs serve I(A:BC) only
        g = torch.Generator().manual_seed(seed * 1000 + run)
        torch.manual_seed(seed * 1000 + run)
        fixed_noise = torch.randn(train_x0.shape, generator=g) if settings.protocol == "paper" else None
        critic = ImageCritic(data.shape[0], settings.width)
        optimiser = torch.optim.Adam(critic.parameters(), lr=settings.lr)
        tail = []
        for step in range(settings.steps):
            idx = torch.randint(0, len(train_x0), (settings.batch_size,), generator=g)
            z = fixed_noise[idx] if fixed_noise is not None else torch.randn(train_x0[idx].shape, generator=g)
            x_t = add_noise(train_x0[idx], t, z)
            bound = dv_bound(critic(*_critic_inputs(x_t, a, 0), visible), critic(*_critic_inputs(x_t, a, 1), visible))
            optimiser.zero_grad()
            (-bound).backward()
            optimiser.step()
            if step >= settings.steps - max(1, settings.steps // 10):
                tail.append(bound.item())
        if settings.protocol == "paper":
            estimates.append(float(np.mean(tail)))
            continue
        values = []
        with torch.no_grad():
            for _ in range(settings.eval_batches):
                idx = torch.randint(0, len(eval_x0), (settings.eval_batch_size,), generator=g)
                x_t = add_noise(eval_x0[idx], t, torch.randn(eval_x0[idx].shape, generator=g))
                values.append(float(dv_bound(critic(*_critic_inputs(x_t, a, 0), visible),
                                             critic(*_critic_inputs(x_t, a, 1), visible))))
        estimates.append(float(np.mean(values)))
        errors.append(float(np.std(values, ddof=1) / np.sqrt(len(values))))
    if settings.protocol == "paper":
        return max(estimates), float("nan")
    return float(np.mean(estimates)), float(np.sqrt(np.sum(np.square(errors))) / len(errors))


def mine_cmi(data: Dataset, ts, radii, site, patch: int, settings: MineSettings, seed: int = 0):
    """(values (T, R), stderr (T, R) or None, details) of I_t(A:C|B_r) = I_t(A:BC) - I_t(A:B_r)."""
    values = np.zeros((len(ts), len(radii)))
    errors = np.zeros_like(values)
    jobs = [(i, t, None) for i, t in enumerate(ts)] + [(i, t, r) for i, t in enumerate(ts) for r in radii]
    whole = {}
    for i, t, r in progress(jobs, desc=f"MINE ({settings.protocol})", unit="critic"):
        if t >= 1.0:  # x_t is pure noise: every information is exactly zero
            estimate, error = 0.0, 0.0
        else:
            estimate, error = mine_information(data, t, site, patch, r, settings, seed)
        if r is None:
            whole[i] = (estimate, error)
            continue
        j = list(radii).index(r)
        diff = whole[i][0] - estimate
        values[i, j] = max(0.0, diff) if settings.protocol == "paper" else diff
        errors[i, j] = math.hypot(whole[i][1], error)
    details = {"mine": {"protocol": settings.protocol, "steps": settings.steps, "batch_size": settings.batch_size,
                        "runs": settings.runs},
               "information_whole": [whole[i][0] for i in range(len(ts))]}
    return values, (None if settings.protocol == "paper" else errors), details
