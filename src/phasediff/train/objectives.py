"""Training objectives. Each draws everything random from the step's generator, so a step is a pure
function of (weights, data, seed, step): resumed and uninterrupted runs see the same batches and noise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from phasediff.denoisers.local import valid_output_mask
from phasediff.denoisers.targets import target
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise


@dataclass
class DenoisingObjective:
    """E_{t, z} || f(x_t, t) - target(x_0, z) ||^2 with x_t = (1 - t) x_0 + t z, t ~ U[t_min, t_max].

    ``crop``: train a local network on random crops of this size; the loss covers only the outputs that
    see their full context (`valid_output_mask`). ``conditional``: pass labels, dropped with the network's
    label_dropout for classifier-free guidance.
    """

    t_min: float = 0.0
    t_max: float = 1.0
    crop: int | None = None
    conditional: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise PhasediffError(f"need 0 <= t_min < t_max <= 1, got {self.t_min}, {self.t_max}")

    def draw(self, images: Tensor, labels: Tensor | None, generator: torch.Generator) -> dict:
        """All the randomness of one step for a batch of clean images."""
        n = len(images)
        draw = {"x0": images, "labels": labels}
        if self.crop is not None:
            H, W = images.shape[-2:]
            if self.crop > min(H, W):
                raise PhasediffError(f"crop {self.crop} exceeds the {H} x {W} images")
            y0 = int(torch.randint(0, H - self.crop + 1, (), generator=generator))
            x0 = int(torch.randint(0, W - self.crop + 1, (), generator=generator))
            draw["x0"] = images[:, :, y0 : y0 + self.crop, x0 : x0 + self.crop]
            draw["box"], draw["image_size"] = (y0, x0, self.crop, self.crop), (H, W)
        draw["t"] = self.t_min + (self.t_max - self.t_min) * torch.rand(n, generator=generator)
        draw["z"] = torch.randn(draw["x0"].shape, generator=generator)
        if self.conditional:
            draw["label_draw"] = torch.rand(n, generator=generator)  # below label_dropout: label dropped
        return draw

    def loss(self, net, draw: dict) -> Tensor:
        """Mean squared error of the raw prediction of the bare network ``net`` against its target."""
        x0, z, t = draw["x0"], draw["z"], draw["t"]
        x_t = add_noise(x0, t[:, None, None, None], z)
        labels = None
        if self.conditional:
            if draw["labels"] is None:
                raise PhasediffError("a conditional model needs a dataset with labels")
            drop = draw["label_draw"] < net.label_dropout
            labels = torch.where(drop, torch.full_like(draw["labels"], net.null_label), draw["labels"])
        extra = {"origin": draw["box"][:2]} if "box" in draw and getattr(net, "position_channels", False) else {}
        raw = net.predict(x_t, t, labels, **extra)
        error = (raw.float() - target(net.prediction, x0, z)) ** 2
        if "box" not in draw:
            return error.mean()
        mask = valid_output_mask(draw["box"], draw["image_size"], net.radius).to(error.dtype)
        return (error * mask).sum() / (mask.sum() * error.shape[0] * error.shape[1])


@dataclass
class ClassificationObjective:
    """Cross-entropy of the class logits; light augmentation by random shifts of up to ``shift`` pixels."""

    shift: int = 2

    def draw(self, images: Tensor, labels: Tensor | None, generator: torch.Generator) -> dict:
        if labels is None:
            raise PhasediffError("training a classifier needs a dataset with labels")
        dy, dx = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,), generator=generator))
        return {"x0": torch.roll(images, shifts=(dy, dx), dims=(2, 3)), "labels": labels}

    def loss(self, net, draw: dict) -> Tensor:
        return F.cross_entropy(net(draw["x0"]).float(), draw["labels"])
