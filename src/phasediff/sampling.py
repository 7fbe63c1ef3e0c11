"""Samplers: short pure functions over a time grid that take any denoiser ``D(x_t, t, label) -> x0_hat``.

On the path x_t = (1 - t) x_0 + t z the probability-flow velocity is v = dx_t/dt = z - x_0, estimated
from the denoiser as v = (x_t - x0_hat) / t. Integration runs from t = 1 (pure noise) to t = 0. `euler` and
`heun` integrate this ODE; `ancestral` samples the reverse process step by step (stochastic).

Every sampler takes ``callback(step, t, x, x0_hat)``, called once per step with the state x at time t and the
denoiser's answer there (k-diffusion's pattern): diagnostics that record trajectories use it instead of
wrapping the denoiser.
"""

from __future__ import annotations

from typing import Callable

import torch

from phasediff.errors import PhasediffError
from phasediff.stats import seeded_generator

Denoiser = Callable[..., torch.Tensor]


def time_grid(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> torch.Tensor:
    """steps + 1 uniformly spaced times from t_max down to t_min."""
    if steps < 1:
        raise PhasediffError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise PhasediffError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
    return torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64)


Callback = Callable[[int, float, torch.Tensor, torch.Tensor], None]


def denoise(denoiser: Denoiser, x: torch.Tensor, t: float, label=None) -> torch.Tensor:
    """x0_hat = D(x_t, t) with t broadcast to the batch."""
    return denoiser(x, torch.full((len(x),), t, dtype=x.dtype, device=x.device), label)


def velocity(denoiser: Denoiser, x: torch.Tensor, t: float, label=None) -> torch.Tensor:
    """v = (x_t - D(x_t, t)) / t."""
    return (x - denoise(denoiser, x, t, label)) / t


@torch.no_grad()
def euler(denoiser: Denoiser, noise: torch.Tensor, times: torch.Tensor, label=None,
          callback: Callback | None = None) -> torch.Tensor:
    """x_{t'} = x_t + (t' - t) v(x_t, t) over the grid; one denoiser call per step."""
    x = noise
    for step, (t, t_next) in enumerate(zip(times[:-1].tolist(), times[1:].tolist())):
        x0_hat = denoise(denoiser, x, t, label)
        if callback is not None:
            callback(step, t, x, x0_hat)
        x = x + (t_next - t) * ((x - x0_hat) / t)
    return x


@torch.no_grad()
def heun(denoiser: Denoiser, noise: torch.Tensor, times: torch.Tensor, label=None,
         callback: Callback | None = None) -> torch.Tensor:
    """Heun's second-order method; the last step to t = 0 is an Euler step (v is undefined at t = 0).
    ``callback`` sees the first evaluation of each step."""
    x = noise
    for step, (t, t_next) in enumerate(zip(times[:-1].tolist(), times[1:].tolist())):
        x0_hat = denoise(denoiser, x, t, label)
        if callback is not None:
            callback(step, t, x, x0_hat)
        v = (x - x0_hat) / t
        x_euler = x + (t_next - t) * v
        if t_next > 0:
            x_euler = x + (t_next - t) * 0.5 * (v + velocity(denoiser, x_euler, t_next, label))
        x = x_euler
    return x


def bridge(t: float, s: float) -> tuple[float, float, float]:
    """Coefficients (c_x, c_0, var) of q(x_s | x_t, x_0) = N(c_x x_t + c_0 x_0, var I) on x_t = a_t x_0 + t z.

    The path is the marginal of the Markov chain x_t = (a_t / a_s) x_s + sigma_{t|s} eps (a = 1 - t,
    sigma_{t|s}^2 = t^2 - (a_t / a_s)^2 s^2, so that x_t | x_0 ~ N(a_t x_0, t^2)). Bayes' rule for the
    Gaussians x_s | x_0 ~ N(a_s x_0, s^2) and x_t | x_s gives

        mean = (a_t / a_s) (s^2 / t^2) x_t + a_s (sigma_{t|s}^2 / t^2) x_0,
        var  = sigma_{t|s}^2 s^2 / t^2.

    At s = 0 this is (0, 1, 0): x_s = x_0.
    """
    a_t, a_s = 1.0 - t, 1.0 - s
    ratio = a_t / a_s
    var_ts = max(t**2 - ratio**2 * s**2, 0.0)
    return ratio * s**2 / t**2, a_s * var_ts / t**2, var_ts * s**2 / t**2


@torch.no_grad()
def ancestral(denoiser: Denoiser, noise: torch.Tensor, times: torch.Tensor, label=None,
              callback: Callback | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic ancestral sampler: from x_t draw x_s ~ q(x_s | x_t, x_0 = x0_hat) (`bridge`), x0_hat = D(x_t, t).

    With the exact posterior mean this is the exact reverse process only in the limit of many steps: an exact
    step would draw x_0 from p(x_0 | x_t), which x0_hat (its mean) replaces. The last step to s = 0 returns
    x0_hat. ``generator`` (a CPU torch.Generator; None: torch's global one) draws the step noise.
    """
    x = noise
    for step, (t, s) in enumerate(zip(times[:-1].tolist(), times[1:].tolist())):
        x0_hat = denoise(denoiser, x, t, label)
        if callback is not None:
            callback(step, t, x, x0_hat)
        c_x, c_0, var = bridge(t, s)
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = c_x * x + c_0 * x0_hat + var**0.5 * eps
    return x


SAMPLERS = {"euler": euler, "heun": heun, "ancestral": ancestral}
STOCHASTIC = ("ancestral",)  # samplers that take a ``generator`` for their step noise


def sample(denoiser: Denoiser, n: int, shape: tuple[int, int, int], steps: int = 32, method: str = "euler",
           seed: int = 0, label=None, batch_size: int = 500, device: str = "cpu",
           callback: Callback | None = None) -> torch.Tensor:
    """n samples (n, C, H, W) from pure noise at t = 1, seeded, in batches; ``callback`` runs on every batch.

    A stochastic sampler draws its step noise from a second generator seeded with (seed, 1), consumed batch after
    batch: the same seed and batch size give the same samples."""
    if method not in SAMPLERS:
        raise PhasediffError(f"unknown sampler {method!r} (choose from {', '.join(SAMPLERS)})")
    if n < 1:
        raise PhasediffError(f"n must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *shape), generator=generator)
    times = time_grid(steps)
    extra = {"generator": seeded_generator(seed, 1)} if method in STOCHASTIC else {}
    out = []
    for start in range(0, n, batch_size):
        part = label[start : start + batch_size].to(device) if label is not None else None
        out.append(SAMPLERS[method](denoiser, noise[start : start + batch_size].to(device), times, part,
                                   callback, **extra).cpu())
    return torch.cat(out)
