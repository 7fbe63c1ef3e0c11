"""The network of the neural CMI estimator: the posterior of x_0,A given the noised pixels within radius r,
for every r at once.

Geometry: d(p) is the Chebyshev distance of pixel p to the patch A (rings d = 1..D around it; d = 0 is A).
The context of radius r is {p : 1 <= d(p) <= r}; r = D is the whole image but A. The network is causal in d:

- features per pixel: x, x^2 and a pointwise projection of an optional trunk (``blocks`` > 0; none by
  default): residual blocks of a depthwise 3 x 3 convolution whose tap from q to p is kept only when
  d(q) <= d(p) (a "ring-causal" convolution), then pointwise layers with FiLM in t. A feature at p therefore
  depends only on pixels no farther from A than p. Pixels of A are zeroed at the input;
- readout: position-specific linear maps summed over each ring, then a cumulative sum over rings:
  h_r = sum_{1 <= d(p) <= r} W_p f_p, a function of the context of radius r alone;
- head: a residual MLP on (h_r, t, r, the earlier elements of A) giving the posterior of each element of A
  (raster order, channels innermost; the chain rule over A).

One forward pass gives the posterior for r = 0 (no context), 1, ..., D, so the local (B_r) and global (B u C)
cross-entropies come from the same network and the same pass.

Site pooling (``pool`` = p > 0): in training, each image is translated by a random shift s with |s_y|, |s_x| <= p
so that the site A + s sits where A is (``translate``; pixels from outside the image are zero, with a
validity feature), and the head is told s by an embedding. One image then gives targets at (2p + 1)^2 sites
to weights shared across them; evaluation uses s = 0, the site A itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from phasediff.errors import PhasediffError
from phasediff.regions import chebyshev_distance


@dataclass(frozen=True)
class Geometry:
    """Rings around the patch A of ``patch`` x ``patch`` pixels at ``site`` on a (C, H, W) image."""

    shape: tuple[int, int, int]
    site: tuple[int, int]
    patch: int

    @property
    def distance(self) -> np.ndarray:
        """d(p), (H, W)."""
        return chebyshev_distance(self.shape[1:], self.site, self.patch)

    @property
    def n_rings(self) -> int:
        """D, the largest distance to A."""
        return int(self.distance.max())

    def rings(self) -> list[np.ndarray]:
        """Flat pixel indices (into H * W) of the rings d = 1..D."""
        flat = self.distance.ravel()
        return [np.flatnonzero(flat == d) for d in range(1, self.n_rings + 1)]

    def targets(self) -> np.ndarray:
        """Flat element indices (into C * H * W) of A in chain-rule order: pixels in raster order, channel innermost."""
        c, h, w = self.shape
        pixels = np.flatnonzero(self.distance.ravel() == 0)
        return (np.arange(c)[None, :] * h * w + pixels[:, None]).ravel()

    def coarse_basis(self, cell: float) -> np.ndarray:
        """(H * W, J) bilinear hat functions on a grid of nodes about ``cell`` pixels apart (a partition of unity)."""
        h, w = self.shape[1:]
        axes = []
        for size in (h, w):
            nodes = np.linspace(0, size - 1, max(2, int(np.ceil((size - 1) / cell)) + 1) if size > 1 else 1)
            spacing = nodes[1] - nodes[0] if size > 1 else 1.0
            axes.append(np.maximum(0.0, 1 - np.abs(np.arange(size)[:, None] - nodes[None]) / spacing))
        return np.einsum("yi,xj->yxij", *axes).reshape(h * w, -1)

    def causal_taps(self, dilation: int) -> np.ndarray:
        """(9, H, W) mask of the 3 x 3 taps q = p + dilation * (dy, dx) inside the image with d(q) <= d(p)."""
        d = self.distance
        h, w = d.shape
        padded = np.full((h + 2 * dilation, w + 2 * dilation), np.iinfo(np.int64).max)
        padded[dilation:-dilation, dilation:-dilation] = d
        taps = [padded[dilation + dy * dilation: dilation + dy * dilation + h,
                       dilation + dx * dilation: dilation + dx * dilation + w] <= d
                for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        return np.stack(taps)


def time_features(t: torch.Tensor, n: int = 8) -> torch.Tensor:
    """[t, sin(pi k t), cos(pi k t)] for k = 1..n, (B, 2n + 1)."""
    k = torch.arange(1, n + 1, device=t.device, dtype=t.dtype) * math.pi
    return torch.cat([t[:, None], torch.sin(t[:, None] * k), torch.cos(t[:, None] * k)], 1)


class RingCausalBlock(nn.Module):
    """h + W2 gelu(FiLM_t(W1 dwconv(h))), the depthwise 3 x 3 convolution restricted to taps with d(q) <= d(p)."""

    def __init__(self, channels: int, taps: np.ndarray, dilation: int, t_dim: int):
        super().__init__()
        self.dilation = dilation
        self.register_buffer("taps", torch.as_tensor(taps, dtype=torch.float32))
        self.depthwise = nn.Parameter(torch.randn(channels, 9) / 3.0)
        self.inner = nn.Conv2d(channels, 2 * channels, 1)
        self.film = nn.Linear(t_dim, 4 * channels)
        self.outer = nn.Conv2d(2 * channels, channels, 1)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        nn.init.zeros_(self.outer.weight)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        b, c, height, width = h.shape
        k = self.dilation
        padded = F.pad(h, (k, k, k, k))
        weights = self.depthwise[:, :, None, None] * self.taps[None]  # (C, 9, H, W)
        mixed = sum(padded[:, :, k + dy * k: k + dy * k + height, k + dx * k: k + dx * k + width] * weights[:, i]
                    for i, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)))
        gain, bias = self.film(temb)[:, :, None, None].chunk(2, 1)
        return h + self.outer(F.gelu(self.inner(mixed) * (1 + gain) + bias))


class ResidualMLP(nn.Module):
    """x + W2 (gelu(W1 y) * W3 y) with y = LayerNorm(x): a gated unit, which forms products (quadratic forms,
    the log-likelihoods of Gaussian components) directly; glu=False: x + W2 gelu(W1 y)."""

    def __init__(self, width: int, glu: bool = True):
        super().__init__()
        self.glu = glu
        self.norm = nn.LayerNorm(width)
        self.inner = nn.Linear(width, 2 * width)
        self.outer = nn.Linear(width if glu else 2 * width, width)
        nn.init.zeros_(self.outer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(self.norm(x))
        if self.glu:
            a, b = y.chunk(2, -1)
            return x + self.outer(F.gelu(a) * b)
        return x + self.outer(F.gelu(y))


@dataclass(frozen=True)
class NetConfig:
    """Sizes of the network; the defaults are the ones measured by benchmarks/neural_cmi_validation.py."""

    channels: int = 24
    blocks: int = 0  # ring-causal trunk blocks; 0: per-pixel features only (about 6x cheaper per step on a CPU)
    readout_channels: int = 8
    near: int = 3
    cell: float = 3.0
    far_features: int = 0  # 0: all features in the far field; k: only the first k (x and x^2 per channel ...)
    width: int = 256
    head_blocks: int = 2
    glu: bool = True
    pool: int = 0  # training sites: A shifted by up to ``pool`` pixels each way (0: A alone)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def translate(images: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, valid), (B, C, H, W) and (B, 1, H, W): out[b, :, i, j] = images[b, :, i + shift[b, 0], j + shift[b, 1]],
    0 where that falls outside the image (valid = 0 there, 1 elsewhere)."""
    b, c, h, w = images.shape
    rows = shift[:, 0, None] + torch.arange(h, device=images.device)  # (B, H) source rows
    cols = shift[:, 1, None] + torch.arange(w, device=images.device)  # (B, W) source columns
    valid = (((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])[:, None]
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = images.permute(0, 2, 3, 1)[batch, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
    return out.permute(0, 3, 1, 2) * valid, valid.to(images.dtype)


class RingNet(nn.Module):
    """Posterior parameters of each element of A given the context of every radius r = 0..D.

    forward(x, t, target) with x the standardised noised image (B, C, H, W) (A is zeroed here), t (B,), and
    target the standardised noised values of A's elements (B, m) returns (B, D + 1, m, n_outputs). With site
    pooling, ``valid`` and ``shift`` are those of a translated image (``translate``); None: the image itself.
    """

    def __init__(self, geometry: Geometry, n_outputs: int, config: NetConfig = NetConfig()):
        super().__init__()
        self.geometry, self.config = geometry, config
        c_img, h, w = geometry.shape
        ch, width = config.channels, config.width
        t_dim = 2 * 8 + 1
        self.register_buffer("target_index", torch.as_tensor(geometry.targets()))
        self.register_buffer("is_target", torch.zeros(c_img * h * w).index_fill_(0, self.target_index, 1.0))
        rings = geometry.rings()
        self.ring_sizes = [len(r) for r in rings]
        self.near = min(config.near, len(rings))
        self.register_buffer("ring_order", torch.as_tensor(np.concatenate(rings)))
        n_near = sum(self.ring_sizes[: self.near])
        basis = geometry.coarse_basis(config.cell)[np.concatenate(rings)[n_near:]]
        self.register_buffer("far_basis", torch.as_tensor(basis, dtype=torch.float32))
        self.stem = nn.Conv2d(c_img, ch, 1)
        dilations = [2 ** (i % 3) for i in range(config.blocks)]  # 1, 2, 4, 1, ...: a wide receptive field cheaply
        self.blocks = nn.ModuleList(RingCausalBlock(ch, geometry.causal_taps(k), k, t_dim) for k in dilations)
        self.project = nn.Conv2d(ch, config.readout_channels, 1)
        features = 2 * c_img + config.readout_channels + (1 if config.pool else 0)
        if config.pool:
            (y, x), size, p = geometry.site, geometry.patch, config.pool
            if min(y, x) < p or y + size + p > h or x + size + p > w:
                raise PhasediffError(f"pool {config.pool}: the shifted sites must stay inside the {h} x {w} image")
            self.shift = nn.Embedding((2 * config.pool + 1) ** 2, width)
        self.near_readout = nn.Parameter(torch.randn(n_near, features, width) / math.sqrt(features * max(n_near, 1)))
        self.n_far = config.far_features or features
        self.far_readout = nn.Parameter(torch.randn(self.n_far * basis.shape[1], width) / math.sqrt(self.n_far * 8))
        self.readout_bias = nn.Parameter(torch.zeros(width))
        m = len(geometry.targets())
        self.register_buffer("earlier", torch.tril(torch.ones(m, m), -1))
        self.prefix = nn.Linear(2 * m, width)
        self.radius = nn.Embedding(geometry.n_rings + 1, width)
        self.time = nn.Linear(t_dim, width)
        self.mlp = nn.Sequential(*[ResidualMLP(width, config.glu) for _ in range(config.head_blocks)])
        self.out = nn.Linear(width, n_outputs)

    def trunk_features(self, x: torch.Tensor, temb: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pixel features (B, F, H * W): the input x, x^2 (Gaussian log-likelihoods are sums of these), the
        validity (site pooling only) and a projection of the ring-causal trunk."""
        b = len(x)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, temb)
        extra = [] if not self.config.pool else [torch.ones_like(x[:, :1]) if valid is None else valid]
        return torch.cat([x, x**2, *extra, self.project(F.gelu(h))], 1).reshape(b, -1, x.shape[2] * x.shape[3])

    def context(self, x: torch.Tensor, temb: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """h_r for r = 0..D, (B, D + 1, width), scaled by 1 / sqrt(number of context pixels).

        Rings 1..near are read with one weight matrix per pixel; farther rings through the coarse basis
        (weights W_p = sum_j phi_j(p) M_j, smooth in p), which keeps the far field's parameters few.
        """
        f = self.trunk_features(x, temb, valid)[:, :, self.ring_order]  # (B, F, P) in ring order
        b = len(f)
        sums, start = [torch.zeros(b, self.config.width, dtype=x.dtype, device=x.device)], 0
        for size in self.ring_sizes[: self.near]:
            sums.append(torch.einsum("bfp,pfw->bw", f[:, :, start: start + size], self.near_readout[start: start + size]))
            start += size
        h = torch.cumsum(torch.stack(sums, 1), 1)
        pooled, offset = [], start
        for size in self.ring_sizes[self.near:]:
            pooled.append(f[:, : self.n_far, start: start + size] @ self.far_basis[start - offset: start - offset + size])
            start += size
        if pooled:
            far = torch.cumsum(torch.stack(pooled, 1), 1).reshape(b, len(pooled), -1) @ self.far_readout
            counts = torch.tensor(np.cumsum(self.ring_sizes[self.near:]), dtype=x.dtype, device=x.device)
            h = torch.cat([h, h[:, -1:] + far / counts.sqrt()[:, None]], 1)
        return h + self.readout_bias

    def forward(self, x: torch.Tensor, t: torch.Tensor, target: torch.Tensor, return_hidden: bool = False,
                valid: torch.Tensor | None = None, shift: torch.Tensor | None = None):
        b = len(x)
        x = (x.reshape(b, -1) * (1 - self.is_target)).reshape(x.shape)
        temb = time_features(t)
        ctx = self.context(x, temb, valid)  # (B, R, width)
        if self.config.pool:
            p = self.config.pool
            index = (torch.full((b,), p * (2 * p + 1) + p, device=x.device) if shift is None
                     else (shift[:, 0] + p) * (2 * p + 1) + shift[:, 1] + p)
            ctx = ctx + self.shift(index)[:, None]
        prefix = self.prefix(torch.cat([target[:, None, :] * self.earlier, torch.eye(len(self.earlier),
                                        device=x.device).expand(b, -1, -1)], -1))  # (B, m, width)
        radii = self.radius.weight  # (R, width)
        h = ctx[:, :, None] + prefix[:, None] + radii[None, :, None] + self.time(temb)[:, None, None]
        hidden = self.mlp(h)
        return (self.out(hidden), hidden) if return_hidden else self.out(hidden)
