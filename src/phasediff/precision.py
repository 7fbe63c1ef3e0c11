"""Numeric precision of network passes: fp32, bf16 autocast (products in bfloat16, weights kept in fp32), or
auto: bf16 where the hardware multiplies bfloat16 natively, fp32 elsewhere."""

from __future__ import annotations

import sys

from phasediff.errors import PhasediffError

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PhasediffError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` multiplies bfloat16 natively: a CPU with AVX-512 BF16 or AMX, a CUDA GPU of
    compute capability 8 or more. Elsewhere bf16 autocast is emulated (on an AVX2 CPU it runs 10-16x slower
    than fp32: benchmarks/denoiser_throughput.py)."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def resolve_precision(precision: str, device_type: str = "cpu", warn: bool = False) -> str:
    """fp32 or bf16: ``auto`` becomes bf16 where it is native (``native_bf16``), fp32 elsewhere. With ``warn``,
    an explicit bf16 on hardware that only emulates it gets a one-line warning on stderr."""
    if check_precision(precision) == "auto":
        return "bf16" if native_bf16(device_type) else "fp32"
    if warn and precision == "bf16" and not native_bf16(device_type):
        print(f"phasediff: warning: bf16 is emulated on this {device_type} and runs several times slower than "
              "fp32 (--precision auto picks fp32 here)", file=sys.stderr)
    return precision


def autocast(precision: str, device_type: str = "cpu"):
    """The context that runs networks (forward and backward) at ``precision`` on ``device_type``."""
    import torch  # here, so that the CLI can read PRECISIONS without loading torch

    enabled = resolve_precision(precision, device_type) == "bf16"
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)
