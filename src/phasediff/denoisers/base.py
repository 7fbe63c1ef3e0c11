"""The denoiser protocol, the base class of network denoisers, and the conditioning they share.

A denoiser maps a noised batch to an estimate of the clean data::

    x0_hat = D(x_t, t, label=None),   x_t = (1 - t) x_0 + t z,   x_t of shape (B, C, H, W),

with t a float or a (B,) tensor in [0, 1] and ``radius`` the Chebyshev radius of its receptive field
(None for a global denoiser). A network predicts a raw output of kind ``prediction`` ("x0", "eps" or "v",
see `targets`), and ``forward`` converts it to x0_hat.

Class conditioning: labels 0 .. num_classes - 1, plus the null label ``num_classes`` that stands for
"no label" (label=None, or a label dropped during training for classifier-free guidance).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from phasediff.denoisers.targets import check_kind, to_x0
from phasediff.errors import PhasediffError


@runtime_checkable
class Denoiser(Protocol):
    """Anything that maps (x_t, t, label) to x0_hat and states its radius (None: global)."""

    radius: int | None

    def __call__(self, x_t: Tensor, t: Tensor | float, label: Tensor | None = None) -> Tensor: ...


# The project's architectures: config()["arch"] -> "module:class", imported when first built.
ARCHITECTURES = {
    "local": "phasediff.denoisers.local:LocalDenoiser",
    "wiener-local": "phasediff.denoisers.wiener_local:WienerPlusLocalDenoiser",
    "unet": "phasediff.denoisers.unet:UNet",
    "classifier": "phasediff.classifier:Classifier",
}


def build(config: dict[str, Any]) -> nn.Module:
    """Rebuild a network (fresh weights) from its ``config()``: {"arch": name, **constructor arguments}."""
    config = dict(config)
    arch = config.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise PhasediffError(f"unknown network architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))})")
    module, name = ARCHITECTURES[arch].split(":")
    try:
        return getattr(importlib.import_module(module), name)(**config)
    except TypeError as err:
        raise PhasediffError(f"bad configuration for {arch}: {err}") from None


def check_inputs(x_t: Tensor, t: Tensor | float, shape: Sequence[int | None] | None = None,
                 like: Tensor | None = None) -> Tensor:
    """The input check of every denoiser: x_t a (B, *shape) tensor, B >= 1 (``shape`` (C, H, W) with None for
    any size; default: any (C, H, W)); returns t, a float or a (B,) tensor, as a (B,) tensor in [0, 1] in the
    dtype and on the device of ``like`` (default x_t)."""
    shape = (None, None, None) if shape is None else tuple(shape)
    if (not isinstance(x_t, Tensor) or x_t.ndim != 1 + len(shape) or x_t.shape[0] < 1
            or any(want is not None and got != want for got, want in zip(x_t.shape[1:], shape))):
        got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
        want = ", ".join("." if s is None else str(s) for s in shape)
        raise PhasediffError(f"x_t must be a tensor of shape (B, {want}), got {got}")
    like = x_t if like is None else like
    t = torch.as_tensor(t.detach() if isinstance(t, Tensor) else t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.expand(x_t.shape[0])
    if t.shape != (x_t.shape[0],):
        raise PhasediffError(f"t must be a float or a tensor of shape ({x_t.shape[0]},), got {tuple(t.shape)}")
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise PhasediffError("t must lie in [0, 1]")
    return t


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from an int or a pair, refusing anything else."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise PhasediffError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return size


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """(B,) times in [0, 1] -> (B, dim): [cos(1000 t w_k), sin(1000 t w_k)], w_k = 10000^(-k / (dim/2)).

    Computed in float32 (float64 for float64 t): bf16 cannot resolve 1000 t.
    """
    t = t.double() if t.dtype == torch.float64 else t.float()
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    args = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ConditionEmbedding(nn.Module):
    """emb(t, label) = MLP(sinusoid(t)) + E[label]: one vector per sample, the same at every pixel."""

    def __init__(self, dim: int, num_classes: int | None):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.classes = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, t: Tensor, label: Tensor | None) -> Tensor:
        emb = self.mlp(sinusoidal_embedding(t, self.dim).to(self.mlp[0].weight.dtype))
        if self.classes is not None:
            if label is None:
                label = torch.full_like(t, self.classes.num_embeddings - 1, dtype=torch.long)
            emb = emb + self.classes(label)
        return emb


class NetworkDenoiser(nn.Module):
    """Base of the trainable denoisers: ``forward`` validates inputs, calls ``predict`` and converts to x0.

    Subclasses set ``arch`` (their name in `ARCHITECTURES`), call ``super().__init__`` with their constructor
    arguments (so that ``config()`` can rebuild them) and implement ``predict(x_t, t, label, **inputs)``
    returning the raw network output of kind ``self.prediction``, t being a (B,) tensor.
    """

    arch: ClassVar[str]
    radius: int | None

    def __init__(self, *, channels: int, prediction: str, num_classes: int | None, label_dropout: float,
                 **arch: Any):
        super().__init__()
        if channels < 1:
            raise PhasediffError(f"channels must be >= 1, got {channels}")
        if num_classes is not None and num_classes < 1:
            raise PhasediffError(f"num_classes must be >= 1 or None, got {num_classes}")
        if not 0.0 <= label_dropout <= 1.0:
            raise PhasediffError(f"label_dropout must lie in [0, 1], got {label_dropout}")
        self.channels = channels
        self.prediction = check_kind(prediction)
        self.num_classes = num_classes
        self.label_dropout = label_dropout
        self._config = dict(channels=channels, prediction=prediction, num_classes=num_classes,
                            label_dropout=label_dropout, **arch)

    @property
    def null_label(self) -> int | None:
        """The label index that means "no label" (None for an unconditional network)."""
        return self.num_classes

    def config(self) -> dict[str, Any]:
        """JSON-ready description that `build` turns back into this architecture."""
        return {"arch": self.arch, **{k: list(v) if isinstance(v, tuple) else v for k, v in self._config.items()}}

    def predict(self, x_t: Tensor, t: Tensor, label: Tensor | None, **inputs: Any) -> Tensor:
        raise NotImplementedError

    def forward(self, x_t: Tensor, t: Tensor | float, label: Tensor | None = None, **inputs: Any) -> Tensor:
        """x0_hat for x_t of shape (B, C, H, W) at times t (float or (B,) tensor)."""
        t = self._check_inputs(x_t, t)
        raw = self.predict(x_t, t, self._check_labels(label, x_t), **inputs)
        return to_x0(raw.to(x_t.dtype), self.prediction, x_t, t)

    def _check_inputs(self, x_t: Tensor, t: Tensor | float) -> Tensor:
        return check_inputs(x_t, t, (self.channels, None, None))

    def _check_labels(self, label: Tensor | None, x_t: Tensor) -> Tensor | None:
        if label is None:
            return None
        if self.num_classes is None:
            raise PhasediffError("this denoiser is unconditional; it takes no label")
        label, batch = torch.as_tensor(label, dtype=torch.long, device=x_t.device), x_t.shape[0]
        if label.shape != (batch,):
            raise PhasediffError(f"label must have shape ({batch},), got {tuple(label.shape)}")
        if bool(((label < 0) | (label > self.num_classes)).any()):
            raise PhasediffError(f"labels must lie in 0..{self.num_classes - 1} (or {self.num_classes}: none)")
        return label

