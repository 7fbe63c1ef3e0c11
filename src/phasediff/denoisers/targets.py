"""What a network predicts, and the conversions between predictions: the only place for these formulas.

On the path x_t = (1 - t) x_0 + t z (t = 0 data, t = 1 noise) a network may predict

- ``"x0"``:  the clean image x_0;
- ``"eps"``: the noise z;
- ``"v"``:   the velocity v = dx_t/dt = z - x_0 (our default: bounded target on the whole path).

Given x_t and t, any one determines the others:

    x0 = x_t - t v                 v  = (x_t - x0) / t
    z  = x_t + (1 - t) v           v  = (z - x_t) / (1 - t)
    x0 = (x_t - t z) / (1 - t)     z  = (x_t - (1 - t) x0) / t

Divisions by t (near data) or 1 - t (near noise) use max(., TINY): there the source prediction carries
no information about the target, and the result is only as good as the network's guess.
"""

from __future__ import annotations

import torch
from torch import Tensor

from phasediff.errors import PhasediffError

KINDS = ("x0", "eps", "v")
TINY = 1e-4  # floor for the divisors t and 1 - t


def check_kind(kind: str) -> str:
    """Refuse a prediction kind other than "x0", "eps" or "v"."""
    if kind not in KINDS:
        raise PhasediffError(f"prediction kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def broadcast_time(t: Tensor | float, like: Tensor) -> Tensor:
    """t as a tensor on like's device and dtype that broadcasts against it: a (B,) tensor becomes (B, 1, ..., 1)."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 1 and like.ndim > 1:
        t = t.reshape(-1, *([1] * (like.ndim - 1)))
    return t


def _over(numerator: Tensor, divisor: Tensor) -> Tensor:
    return numerator / divisor.clamp_min(TINY)


_CONVERSIONS = {
    ("v", "x0"): lambda v, x, t: x - t * v,
    ("v", "eps"): lambda v, x, t: x + (1 - t) * v,
    ("x0", "v"): lambda x0, x, t: _over(x - x0, t),
    ("x0", "eps"): lambda x0, x, t: _over(x - (1 - t) * x0, t),
    ("eps", "x0"): lambda z, x, t: _over(x - t * z, 1 - t),
    ("eps", "v"): lambda z, x, t: _over(z - x, 1 - t),
}


def convert(prediction: Tensor, kind: str, new_kind: str, x_t: Tensor, t: Tensor | float) -> Tensor:
    """Turn a prediction of one kind into another, given x_t and t (float, (B,) tensor or broadcastable)."""
    check_kind(new_kind)
    if check_kind(kind) == new_kind:
        return prediction
    return _CONVERSIONS[kind, new_kind](prediction, x_t, broadcast_time(t, x_t))


def to_x0(prediction: Tensor, kind: str, x_t: Tensor, t: Tensor | float) -> Tensor:
    """x0_hat from a prediction of the given kind (see the module docstring for the formulas)."""
    return convert(prediction, kind, "x0", x_t, t)


def target(kind: str, x0: Tensor, z: Tensor) -> Tensor:
    """The regression target of a network of this kind for x_t = (1 - t) x0 + t z: x0, z or v = z - x0."""
    if check_kind(kind) == "x0":
        return x0
    return z if kind == "eps" else z - x0
