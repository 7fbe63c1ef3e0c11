"""Images per second of strictly local r = 3 denoisers and of the global U-Net, same batch, same process.

The local models: width 64, and width 32 with position channels (the hybrid sampler's).

    python benchmarks/denoiser_throughput.py [--batch 256] [--repeats 5] [--size 28] [--threads N]

Prints JSON. Weights do not change the cost, so fresh networks of the default sizes are timed; fp32 and
bf16 autocast are both measured (bf16 uses AMX/AVX-512 units where the CPU has them).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from phasediff.denoisers import LocalDenoiser, UNet


def images_per_second(model, x, t, repeats: int, bf16: bool) -> float:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x, t)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(x, t)
    return repeats * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size)
    t = torch.full((args.batch,), 0.5)
    models = {"local_r3": LocalDenoiser(3).eval(), "global_unet": UNet(image_size=args.size).eval(),
              "local_r3_width32_positions": LocalDenoiser(3, width=32, position_channels=True,
                                                          image_size=args.size).eval()}
    results = {}
    for name, model in models.items():
        results[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "fp32_images_per_s": images_per_second(model, x, t, args.repeats, bf16=False),
            "bf16_images_per_s": images_per_second(model, x, t, args.repeats, bf16=True),
        }
    speedup = {name: {k: results[name][k] / results["global_unet"][k] for k in ("fp32_images_per_s", "bf16_images_per_s")}
               for name in models if name != "global_unet"}
    print(json.dumps({"batch": args.batch, "size": args.size, "threads": args.threads,
                      "cpu": platform.processor() or platform.machine(), "models": results,
                      "local_over_global": speedup}, indent=2))


if __name__ == "__main__":
    main()
