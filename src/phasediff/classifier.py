"""The judge: a small CNN classifier whose penultimate features define the Frechet distance of samples."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

FEATURES = 128


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class Classifier(nn.Module):
    """conv w -> pool -> conv 2w -> conv 4w -> pool -> conv 8w -> mean over space -> 128 features -> K.

    Inputs (B, C, H, W) in [0, 1] of any size >= 8; GroupNorm (per image, so the EMA weights that training
    saves need no batch statistics); dropout before the last layer.
    """

    arch = "classifier"

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 16, dropout: float = 0.3):
        super().__init__()
        self._config = dict(channels=channels, num_classes=num_classes, width=width, dropout=dropout)
        self.radius = None
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), _norm(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), _norm(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), _norm(4 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 8 * w, 3, padding=1), _norm(8 * w), nn.ReLU(),
        )
        self.features = nn.Sequential(nn.Linear(8 * w, FEATURES), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURES, num_classes))

    def config(self) -> dict[str, Any]:
        return {"arch": self.arch, **self._config}

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(penultimate features (B, 128), logits (B, K))."""
        h = self.body(x).mean(dim=(2, 3))
        f = self.features(h)
        return f, self.head(f)

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[1]


@torch.no_grad()
def accuracy(model: Classifier, images: Tensor, labels: Tensor, batch_size: int = 2000) -> float:
    """Fraction of images whose top class equals the label."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / len(images)
