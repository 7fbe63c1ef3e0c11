"""FLOP rate of the local patch posterior (radius 3, locations "same") against a plain matrix product.

The patch posterior does two matrix products per pixel and training image: the logit (inner size K + 2:
the patch, its norm and the shift) and the weighted centre pixel plus normaliser (C + 1 outputs), so one
call costs

    flops = 2 * M * N * (K + C + 3),   M = B * H * W (queries x pixels),  N = training images,

with K = C (2r + 1)^2. The reference is a plain torch.matmul (M, K + C + 3) @ (K + C + 3, N) of the same
flop count (computed in column blocks into one output buffer, to bound memory), and for context the batched
logit product (H W, B, K + 2) @ (H W, K + 2, N) that the algorithm itself issues. Every timing is the best of
``--repeats``, alternating between the candidates so that load from other processes hits them alike.

    python benchmarks/analytic_flops.py [--train 10000] [--batch 64] [--dtype float64 float32] [--t 0.3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from phasediff.denoisers.analytic import PatchPosteriorDenoiser
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise

RADIUS = 3
REFERENCE_BLOCK = 1024  # columns per block of the reference products


def load(n_train: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """MNIST train / test images, or uniform noise of the same size if the dataset is not at hand."""
    from phasediff.data import load_dataset

    try:
        train = load_dataset("mnist", n=n_train).images
        test = load_dataset("mnist", split="test", n=batch).images
        source = "mnist"
    except PhasediffError:
        g = torch.Generator().manual_seed(seed)
        train, test = torch.rand(n_train, 1, 28, 28, generator=g), torch.rand(batch, 1, 28, 28, generator=g)
        source = "uniform random (mnist not available)"
    return torch.as_tensor(train), torch.as_tensor(test), source


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timer(fn, device: torch.device):
    def run() -> float:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - start
    return run


def measure(train, test, t: float, dtype: torch.dtype, device: torch.device, chunk: int | None, repeats: int,
            seed: int):
    den = PatchPosteriorDenoiser(train, RADIUS, "same", chunk=chunk, dtype=dtype).to(device)
    g = torch.Generator().manual_seed(seed)
    x_t = add_noise(test, t, torch.randn(test.shape, generator=g)).to(device=device, dtype=dtype)
    batch, channels, height, width = x_t.shape
    n_train, k = len(train), channels * (2 * RADIUS + 1) ** 2
    m, inner = batch * height * width, k + channels + 3
    flops = 2 * m * n_train * inner

    a = torch.randn(m, inner, dtype=dtype, device=device)
    b = torch.randn(inner, n_train, dtype=dtype, device=device)
    out = torch.empty(m, REFERENCE_BLOCK, dtype=dtype, device=device)
    qa = torch.randn(height * width, batch, k + 2, dtype=dtype, device=device)
    qb = torch.randn(height * width, k + 2, REFERENCE_BLOCK, dtype=dtype, device=device)
    qout = torch.empty(height * width, batch, REFERENCE_BLOCK, dtype=dtype, device=device)

    def plain():
        for s in range(0, n_train, REFERENCE_BLOCK):
            cols = b[:, s:s + REFERENCE_BLOCK]
            torch.matmul(a, cols, out=out[:, : cols.shape[1]])

    def batched():  # the logit product of the patch posterior, (K + 2) / (K + C + 3) of its flops
        for s in range(0, n_train, REFERENCE_BLOCK):
            width_ = min(REFERENCE_BLOCK, n_train - s)
            torch.matmul(qa, qb[..., :width_], out=qout[..., :width_])

    runs = {"patch": timer(lambda: den(x_t, t), device), "plain": timer(plain, device),
            "batched": timer(batched, device)}
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    rate = flops / best["patch"] / 1e9
    plain_rate = flops / best["plain"] / 1e9
    batched_rate = 2 * m * n_train * (k + 2) / best["batched"] / 1e9
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "chunk": chunk,
        "flops_per_call": flops,
        "matmul_shape": {"M": m, "N": n_train, "K": inner},
        "wall_s": round(best["patch"], 4),
        "gflops": round(rate, 2),
        "images_per_s": round(batch / best["patch"], 2),
        "plain_matmul_gflops": round(plain_rate, 2),
        "fraction_of_plain_matmul": round(rate / plain_rate, 3),
        "batched_matmul_gflops": round(batched_rate, 2),
        "fraction_of_batched_matmul": round(rate / batched_rate, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000, help="training images (default 10000)")
    parser.add_argument("--batch", type=int, default=64, help="query images per call (default 64)")
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--t", type=float, default=0.3, help="noise level of the queries (default 0.3)")
    parser.add_argument("--chunk", type=int, default=None, help="training images per block (default: auto)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train, test, source = load(args.train, args.batch, args.seed)
    results = [measure(train, test, args.t, getattr(torch, name), device, args.chunk, args.repeats, args.seed)
               for name in args.dtype]
    info = {"benchmark": "patch posterior FLOP rate", "radius": RADIUS, "locations": "same", "t": args.t,
            "data": source, "train_images": len(train), "batch": len(test), "image_shape": list(test.shape[1:]),
            "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "results": results}
    json.dump(info, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
