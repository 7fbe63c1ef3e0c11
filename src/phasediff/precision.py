"""Numeric precision of network passes: fp32, or bf16 autocast (products in bfloat16, weights kept in fp32)."""

from __future__ import annotations

from phasediff.errors import PhasediffError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PhasediffError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(precision: str, device_type: str = "cpu"):
    """The context that runs networks (forward and backward) at ``precision`` on ``device_type``."""
    import torch  # here, so that the CLI can read PRECISIONS without loading torch

    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bf16")
