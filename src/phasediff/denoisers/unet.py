"""A global denoiser: a small U-Net (1.7 M parameters at the defaults) for CPU training.

Encoder-decoder with skip connections (DDPM layout): per level ``res_blocks`` residual blocks
(GroupNorm, SiLU, 3x3 conv, scale-shift by the condition embedding), a strided 3x3 convolution down and
nearest-neighbour upsampling + 3x3 convolution up, one self-attention block at the lowest resolution.
The condition embedding is MLP(sinusoid(t)) + E[label], the null label standing for "no label".
Inputs of any size are zero-padded at the bottom and right to a multiple of 2^(levels - 1) and the
output is cropped back, so a 27 x 27 crop works. GroupNorm and attention see the whole image: radius None.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phasediff.denoisers.base import ConditionEmbedding, NetworkDenoiser, image_shape
from phasediff.errors import PhasediffError

GROUPS = 8  # GroupNorm groups; every channel count is a multiple of base, itself a multiple of GROUPS


class _ResBlock(nn.Module):
    """x + conv(SiLU(FiLM(GN(conv(SiLU(GN(x))))))), FiLM = GN(h) (1 + scale) + shift from the embedding."""

    def __init__(self, cin: int, cout: int, embed_dim: int, padding: str = "zeros"):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding)
        self.film = nn.Linear(embed_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(GROUPS, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, padding_mode=padding)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return h + self.skip(x)


class _Attention(nn.Module):
    """x + proj(softmax(q k^T / sqrt(d)) v) over all pixels, multi-head."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        if ch % heads:
            raise PhasediffError(f"attention: {ch} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = nn.GroupNorm(GROUPS, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2)
        out = F.scaled_dot_product_attention(*qkv.unbind(1))
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class _Down(nn.Conv2d):
    def __init__(self, ch: int, padding: str = "zeros"):
        super().__init__(ch, ch, 3, stride=2, padding=1, padding_mode=padding)


class _Up(nn.Module):
    def __init__(self, ch: int, padding: str = "zeros"):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1, padding_mode=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(NetworkDenoiser):
    """Global U-Net denoiser; ``image_size`` is the size it is trained for (the sampler's default shape);
    ``periodic``: the image is a torus (circular padding; sides a multiple of 2^(levels - 1))."""

    arch = "unet"

    def __init__(self, channels: int = 1, base: int = 32, mults: Sequence[int] = (1, 2, 2), res_blocks: int = 2,
                 attention_heads: int = 4, image_size: int | Sequence[int] = 28, num_classes: int | None = None,
                 label_dropout: float = 0.1, prediction: str = "v", periodic: bool = False):
        mults = tuple(int(m) for m in mults)
        super().__init__(channels=channels, prediction=prediction, num_classes=num_classes,
                         label_dropout=label_dropout, base=base, mults=mults, res_blocks=res_blocks,
                         attention_heads=attention_heads, image_size=image_size,
                         **({"periodic": True} if periodic else {}))
        if base < GROUPS or base % GROUPS or not mults or min(mults) < 1 or res_blocks < 1:
            raise PhasediffError(f"UNet needs base a multiple of {GROUPS}, mults >= 1 and res_blocks >= 1")
        self.radius = None
        self.image_size = image_shape(image_size)
        self.factor = 2 ** (len(mults) - 1)
        self.periodic = periodic
        padding = "circular" if periodic else "zeros"
        embed_dim = 4 * base
        self.embed = ConditionEmbedding(embed_dim, num_classes)
        self.stem = nn.Conv2d(channels, base, 3, padding=1, padding_mode=padding)
        ch, skips = base, [base]
        self.down = nn.ModuleList()
        for level, mult in enumerate(mults):
            for _ in range(res_blocks):
                self.down.append(_ResBlock(ch, base * mult, embed_dim, padding))
                ch = base * mult
                skips.append(ch)
            if level < len(mults) - 1:
                self.down.append(_Down(ch, padding))
                skips.append(ch)
        self.mid = nn.ModuleList([_ResBlock(ch, ch, embed_dim, padding), _Attention(ch, attention_heads),
                                  _ResBlock(ch, ch, embed_dim, padding)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(res_blocks + 1):
                self.up.append(_ResBlock(ch + skips.pop(), base * mult, embed_dim, padding))
                ch = base * mult
            if level > 0:
                self.up.append(_Up(ch, padding))
        self.out = nn.Sequential(nn.GroupNorm(GROUPS, ch), nn.SiLU(),
                                 nn.Conv2d(ch, channels, 3, padding=1, padding_mode=padding))

    def predict(self, x_t: Tensor, t: Tensor, label: Tensor | None) -> Tensor:
        H, W = x_t.shape[-2:]
        if self.periodic and (H % self.factor or W % self.factor):
            raise PhasediffError(f"a periodic U-Net needs sides that are multiples of {self.factor}, got {H} x {W}")
        x = F.pad(x_t, (0, -W % self.factor, 0, -H % self.factor))
        emb = F.silu(self.embed(t, label))
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _ResBlock) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, _ResBlock) else layer(h)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(layer, _ResBlock) else layer(h)
        return self.out(h)[..., :H, :W]
