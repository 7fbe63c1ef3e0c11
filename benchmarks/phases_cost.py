"""The cost of one Ising member of `phasediff phases` (seconds on this machine), as JSON.

    python benchmarks/phases_cost.py [--spec ising:L=32,T=3.0] [--n 1000] [--steps 32] [--radii 1,2,3,4,6,8]
        [--width 32] [--base 16] [--gap-images 256] [--threads N]

A member costs: drawing the reference (Swendsen-Wang), all-local generation with one network per radius and
the global one (n samples, `steps` Euler steps each), judging every set by the observables, and the locality
gap on the forward process. Sampling cost does not depend on the weights, so fresh periodic networks of the
sizes the study trains (local width 32, U-Net base 16) are timed; the training of those networks is not
included (see checkpoints/README.md for its cost).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from phasediff.data.registry import load_dataset, load_model
from phasediff.denoisers.local import LocalDenoiser
from phasediff.denoisers.unet import UNet
from phasediff.diagnostics.gap import forward_gap
from phasediff.diagnostics.phases import judge
from phasediff.sampling import sample
from phasediff.specs import parse_list


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="ising:L=32,T=3.0")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--radii", default="1,2,3,4,6,8")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--gap-images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference, reference_seconds = _timed(lambda: load_dataset(args.spec, split="test", n=args.n).images)
    model_of_spec = load_model(args.spec)
    shape = tuple(reference.shape[1:])
    models = {"global": UNet(base=args.base, mults=(1, 2, 2), image_size=shape[-1], periodic=True).eval()}
    models.update({f"r={r}": LocalDenoiser(r, width=args.width, periodic=True).eval()
                   for r in parse_list(args.radii, int, "--radii")})
    generation, judging = {}, {}
    with torch.no_grad():
        for name, model in models.items():
            images, generation[name] = _timed(lambda: sample(model, args.n, shape, steps=args.steps).numpy())
            _, judging[name] = _timed(lambda: judge(args.spec, model_of_spec, images, reference))
        local = {int(name[2:]): m for name, m in models.items() if name != "global"}
        _, gap_seconds = _timed(lambda: forward_gap(local, models["global"],
                                                    torch.from_numpy(reference[:args.gap_images]), steps=args.steps))
    total = reference_seconds + sum(generation.values()) + sum(judging.values()) + gap_seconds
    print(json.dumps({"spec": args.spec, "n": args.n, "steps": args.steps, "threads": args.threads,
                      "reference_seconds": reference_seconds, "generation_seconds": generation,
                      "judge_seconds": judging, "gap_seconds": gap_seconds, "seconds_per_member": total}, indent=1))


if __name__ == "__main__":
    main()
